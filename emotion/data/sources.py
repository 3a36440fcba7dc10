"""Read FER2013 from either of its real formats into uint8 arrays, with the official split where it exists.

Formats:
- the Kaggle folder layout: ``ROOT/train/<class>/*.jpg`` and ``ROOT/test/<class>/*.jpg`` (or class folders directly
  under ``ROOT``, read as a test set), class folders matched to the canonical order by name;
- the original ``fer2013.csv`` (``emotion,pixels,Usage``), labels already in the canonical order.

Every file is decoded once; unreadable files are reported with their reason and skipped, colour / 16-bit /
wrong-size images are converted and counted. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from emotion.data.decode import IMAGE_EXTENSIONS, decode, to_8bit
from emotion.errors import DatasetError
from emotion.labels import FER2013_CLASSES, UnknownClassError, canonical_name

log = logging.getLogger(__name__)

SPLIT_PREFIXES = {"training_": "Training", "publictest_": "PublicTest", "privatetest_": "PrivateTest"}
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")


@dataclass
class ImageFile:
    path: Path
    folder_split: str  # "train" or "test": the top-level folder it sits in
    label: int


@dataclass
class DecodeReport:
    """What happened to every input file: counted, never silent."""

    converted: Counter = field(default_factory=Counter)  # e.g. {"colour→gray": 3, "resized": 2}
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ignored_non_images: list[str] = field(default_factory=list)
    empty_class_folders: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "converted": dict(self.converted),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "ignored_non_images": self.ignored_non_images,
            "empty_class_folders": self.empty_class_folders,
        }


@dataclass
class RawData:
    """Decoded images with their labels and official split tags (Training/PublicTest/PrivateTest or '')."""

    images: np.ndarray  # N×S×S uint8
    labels: np.ndarray  # N int64, index into FER2013_CLASSES
    origin: np.ndarray  # N str: "Training", "PublicTest", "PrivateTest" or "" (unknown)
    folder_split: np.ndarray  # N str: "train" / "test" (folders) or "csv"
    sources: np.ndarray  # N str: relative path, or "fer2013.csv:LINE"
    report: DecodeReport


def find_csv(root: Path) -> Path | None:
    if root.is_file() and root.suffix.lower() == ".csv":
        return root
    for name in CSV_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def _class_dirs(parent: Path) -> list[tuple[Path, int]]:
    dirs = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = []
    for d in dirs:
        try:
            out.append((d, FER2013_CLASSES.index(canonical_name(d.name))))
        except UnknownClassError as exc:
            raise DatasetError(f"{d}: {exc}") from None
    return out


def list_image_files(root: Path, report: DecodeReport) -> list[ImageFile]:
    """All image files of a folder-layout data set, with their folder split and label (by class *name*)."""
    sub = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" in sub or "test" in sub:
        parts = [(sub[s], s) for s in ("train", "test") if s in sub]
    else:
        parts = [(root, "test")]  # class folders directly under root: a labelled evaluation set
    files: list[ImageFile] = []
    for parent, split in parts:
        class_dirs = _class_dirs(parent)
        if not class_dirs:
            raise DatasetError(
                f"{parent} has no class folders. Expected {parent}/<class>/*.jpg with <class> one of "
                f"{', '.join(FER2013_CLASSES)}."
            )
        for class_dir, label in class_dirs:
            n_before = len(files)
            for dirpath, _, names in os.walk(class_dir):
                for name in sorted(names):
                    path = Path(dirpath) / name
                    if path.suffix.lower() in IMAGE_EXTENSIONS:
                        files.append(ImageFile(path, split, label))
                    else:
                        report.ignored_non_images.append(str(path))
            if len(files) == n_before:
                report.empty_class_folders.append(str(class_dir))
    return files


def origin_of(name: str) -> str:
    lower = name.lower()
    for prefix, origin in SPLIT_PREFIXES.items():
        if lower.startswith(prefix):
            return origin
    return ""


def _is_truncated_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]


def decode_image(data: bytes, size: int, report: DecodeReport | None = None) -> np.ndarray:
    """Bytes of any common image format → ``size×size`` uint8 grayscale, upright as its EXIF orientation says (as
    serving reads it: :func:`emotion.data.decode.decode`). Raises ValueError with the reason."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    if _is_truncated_jpeg(data):
        raise ValueError("truncated JPEG (no end-of-image marker)")
    img = decode(data)
    if img is None:
        raise ValueError("not a decodable image")
    return to_gray_square(img, size, report)


def to_gray_square(img: np.ndarray, size: int, report: DecodeReport | None = None) -> np.ndarray:
    """Any decoded image (gray/BGR/BGRA, 8/16-bit/float) → ``size×size`` uint8 grayscale, counting conversions."""
    counts = report.converted if report is not None else Counter()
    if img.dtype != np.uint8:
        counts["16-bit→8-bit" if img.dtype == np.uint16 else f"{img.dtype}→8-bit"] += 1
        img = to_8bit(img)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        else:
            code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            img = cv2.cvtColor(img, code)
            counts["colour→gray"] += 1
    if img.shape != (size, size):
        interp = cv2.INTER_AREA if min(img.shape) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
        counts["resized"] += 1
    return np.ascontiguousarray(img)


def read_folders(root: Path, size: int = 48, workers: int = 4) -> RawData:
    report = DecodeReport()
    files = list_image_files(root, report)

    def load(f: ImageFile) -> np.ndarray | str:
        try:
            return decode_image(f.path.read_bytes(), size, report)
        except (OSError, ValueError, cv2.error) as exc:
            return str(exc)

    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(load, files))
    keep = []
    for f, result in zip(files, decoded):
        if isinstance(result, str):
            report.skipped.append((str(f.path), result))
        else:
            keep.append((f, result))
    images = np.stack([img for _, img in keep]) if keep else np.zeros((0, size, size), np.uint8)
    return RawData(
        images=images,
        labels=np.array([f.label for f, _ in keep], dtype=np.int64),
        origin=np.array([origin_of(f.path.name) for f, _ in keep], dtype=str),
        folder_split=np.array([f.folder_split for f, _ in keep], dtype=str),
        sources=np.array([str(f.path.relative_to(root)) for f, _ in keep], dtype=str),
        report=report,
    )


def read_csv(path: Path, size: int = 48) -> RawData:
    """The original ``fer2013.csv``. A malformed row is an error naming its line: the file is damaged."""
    report = DecodeReport()
    images, labels, origin, sources = [], [], [], []
    n_pixels = size * size
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in ("emotion", "pixels") if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: the header {header} lacks {' and '.join(repr(c) for c in missing)}; "
                "the first line must name the columns emotion,pixels[,Usage] (the Kaggle fer2013.csv)"
            )
        i_emo, i_pix = header.index("emotion"), header.index("pixels")
        i_use = header.index("usage") if "usage" in header else None
        for row in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"{where}: expected {len(header)} columns ({','.join(header)}), got {len(row)}"
                    " (a truncated or damaged file? re-download fer2013.csv)"
                )
            try:
                label = int(row[i_emo])
                pixels = np.array(row[i_pix].split(), dtype=np.int64)
            except ValueError as exc:
                raise DatasetError(f"{where}: malformed row ({exc}); the file may be damaged") from None
            if not 0 <= label < len(FER2013_CLASSES):
                raise DatasetError(f"{where}: emotion label {label} outside 0..{len(FER2013_CLASSES) - 1}")
            if pixels.size != n_pixels or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
                raise DatasetError(
                    f"{where}: expected {n_pixels} pixel values in 0..255, got {pixels.size}"
                    " (a truncated download?). Re-download fer2013.csv."
                )
            images.append(pixels.astype(np.uint8).reshape(size, size))
            labels.append(label)
            usage = row[i_use].strip() if i_use is not None else ""
            origin.append(usage if usage in SPLIT_PREFIXES.values() else "")
            sources.append(f"{path.name}:{line}")
    if not images:
        raise DatasetError(f"{path} has no data rows")
    return RawData(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        origin=np.array(origin, dtype=str),
        folder_split=np.array(["csv"] * len(images), dtype=str),
        sources=np.array(sources, dtype=str),
        report=report,
    )
