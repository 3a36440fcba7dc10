"""Shared fixtures: small generated data sets in both real formats, and composed Hydra configs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from emotion.cli import CONF_DIR  # importing it registers the configs' resolvers (trainer.precision's)
from emotion.data.synthetic import draw_face, write_dataset
from emotion.labels import FER2013_CLASSES

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one thread each
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = Path(CONF_DIR)
SHARED_FER = ROOT.parent / "shared" / "data" / "fer2013"


def fer2013_root() -> Path | None:
    import os

    for candidate in (os.environ.get("FER2013_ROOT"), SHARED_FER):
        if candidate and (Path(candidate) / "train").is_dir():
            return Path(candidate)
    return None


def write_face(path: Path, label: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), draw_face(label, np.random.default_rng(seed)))


@pytest.fixture
def folder_data(tmp_path: Path) -> Path:
    """Kaggle layout with official prefixes: 8 train, 2 PublicTest, 2 PrivateTest images per class."""
    return write_dataset(tmp_path / "fer", n_train=8, n_val=2, n_test=2, seed=1)


def write_csv(path: Path, rows_per_usage: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for usage, n in rows_per_usage.items():
            for i in range(n):
                label = i % len(FER2013_CLASSES)
                img = draw_face(FER2013_CLASSES[label], rng)
                w.writerow([label, " ".join(map(str, img.flatten())), usage])
    return path


@pytest.fixture
def csv_data(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "fer2013.csv", {"Training": 21, "PublicTest": 7, "PrivateTest": 7})


def make_cfg(tmp_path: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """Compose a config as ``python -m emotion.train`` would, with every path inside ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            config_name,
            overrides=[
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path / 'run'}",
                "hydra.job.num=0",  # unused, keeps HydraConfig complete
                *overrides,
            ],
            return_hydra_config=True,
        )
        HydraConfig.instance().set_config(cfg)
    return cfg


# Tiny but real training: generated faces, few images, one or two epochs, no progress bars.
TINY = [
    "experiment=demo",
    "data.synthesize.n_train=12",
    "data.synthesize.n_val=4",
    "data.synthesize.n_test=4",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
]


# Twelve generated faces in batches of four: enough for a few distinct training steps.
SYNTHETIC_12 = [
    "data=synthetic",
    "data.synthesize.n_train=12",
    "data.synthesize.n_val=2",
    "data.synthesize.n_test=2",
    "data.batch_size=4",
    "model.channels_last=false",
]


def weights_after_fit(cfg: DictConfig, steps: int = 2) -> torch.Tensor:
    """The network's weights, flattened, after ``steps`` training steps of the composed ``cfg`` (seeded)."""
    return fit_briefly(cfg, steps)[0]


def fit_briefly(cfg: DictConfig, steps: int = 2) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`weights_after_fit`, and the metrics the fit logged last (``trainer.callback_metrics``)."""
    import hydra
    import lightning as L

    L.seed_everything(0)
    datamodule, model = hydra.utils.instantiate(cfg.data), hydra.utils.instantiate(cfg.model)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=1,  # ReduceLROnPlateau (sota) steps on val/acc
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    weights = torch.cat([p.detach().flatten() for p in model.net.parameters()])
    return weights, {k: float(v) for k, v in trainer.callback_metrics.items()}


def group_photo(img: np.ndarray, scale: float, size: tuple[int, int] = (3600, 2400)) -> tuple[np.ndarray, list]:
    """A large photo, as a phone takes it: six copies of ``img`` scaled by ``scale`` on a noisy grey frame, and the
    top-left corner of each copy."""
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(0).normal(0, 6, (size[1], size[0], 3))
    frame = np.clip(120.0 + noise, 0, 255).astype(np.uint8)
    corners = [(100 + (size[0] // 3) * (i % 3), 150 + (size[1] // 2) * (i // 3)) for i in range(6)]
    for ox, oy in corners:
        frame[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
    return frame, corners
