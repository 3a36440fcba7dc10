"""Where the data set is: the configured root, else a Kaggle download when that can work, else one error naming
every place tried and the ways out. No torch here: the entry points call :func:`check_root` before their heavy
imports, so a missing data set is reported in about a second."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from emotion.errors import DatasetError

log = logging.getLogger(__name__)

KAGGLE_DATASET = "msambare/fer2013"


def kaggle_blockers() -> list[str]:
    """Why a Kaggle download cannot be tried here (empty when it can)."""
    if importlib.util.find_spec("kagglehub") is None:
        return ["kagglehub (not installed: pip install kagglehub)"]
    has_env = bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
    if not (has_env or (Path.home() / ".kaggle" / "kaggle.json").is_file()):
        return ["kagglehub (no Kaggle credentials: KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json)"]
    return []


def missing_dataset_error(root: Path, tried: list[str]) -> DatasetError:
    return DatasetError(
        f"FER2013 not found. Tried: {', '.join(tried)}.\n"
        f"  Expected the Kaggle layout ROOT/train/<class>/*.jpg and ROOT/test/<class>/*.jpg "
        f"(https://www.kaggle.com/datasets/{KAGGLE_DATASET}) or ROOT/fer2013.csv.\n"
        f"  Fix: download it and pass data.root=DIR (or set FER2013_ROOT=DIR); or install kagglehub and set "
        f"KAGGLE_USERNAME/KAGGLE_KEY to download it automatically; or try the pipeline without data: "
        f"python -m emotion.train experiment=demo"
    )


def check_root(root: str | Path, download: bool) -> None:
    """Fail now when ``root`` is missing and no download can fetch it (a download itself is left to the loader)."""
    if not str(root).strip():
        raise DatasetError(
            "data.root is empty: give the folder that holds FER2013 (train/ and test/, or fer2013.csv), e.g. "
            "data.root=../shared/data/fer2013, or set FER2013_ROOT=DIR"
        )
    root = Path(root)
    if root.is_dir():
        return
    if root.exists():
        raise DatasetError(
            f"data.root={root} is a file, not a folder: give the folder that holds train/ and test/ (the Kaggle "
            "layout) or fer2013.csv"
        )
    blockers = kaggle_blockers() if download else ["no download (data.download=false)"]
    if blockers:
        raise missing_dataset_error(root, [str(root), *blockers])


def locate(root: str | Path, download: bool) -> Path:
    """The data root: ``root`` when it exists, else the Kaggle download (when possible), else :class:`DatasetError`."""
    check_root(root, download)  # an empty root or a file is refused; a missing root is downloaded, if it can be
    root = Path(root)
    if root.is_dir():
        return root
    import kagglehub

    try:
        path = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as exc:  # network errors come in many types; report, don't crash
        tried = [str(root), f"kagglehub download of {KAGGLE_DATASET} ({type(exc).__name__}: {exc})"]
        raise missing_dataset_error(root, tried) from None
    log.info("downloaded %s to %s", KAGGLE_DATASET, path)
    return path
