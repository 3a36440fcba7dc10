"""Decode a data set once, then reload it from an on-disk ``.npz`` keyed by its file list (about a second)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from emotion.atomic import atomic_open
from emotion.data.sources import DecodeReport, RawData, find_csv, read_csv, read_folders

log = logging.getLogger(__name__)
CACHE_FORMAT = 3  # 2: caches of the blurred FER2013 copy (before 2026-11-24) are never read again; 3: EXIF orientation


def fingerprint(root: Path, size: int) -> str:
    """Hash of every file's relative path, size and mtime: any added, removed or edited file changes it."""
    h = hashlib.sha256(f"v{CACHE_FORMAT}|{size}|".encode())
    csv_path = find_csv(root)
    if csv_path is not None:
        st = csv_path.stat()
        h.update(f"{csv_path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()[:20]
    h.update(str(root.resolve()).encode())
    for dirpath, dirnames, names in os.walk(root):
        dirnames.sort()
        for name in sorted(names):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _read(root: Path, size: int) -> RawData:
    csv_path = find_csv(root)
    return read_csv(csv_path, size) if csv_path is not None else read_folders(root, size)


def load_raw(root: str | Path, size: int = 48, cache_dir: str | Path | None = None) -> tuple[RawData, bool]:
    """Read ``root`` (cached when ``cache_dir`` is given). Returns the data and whether it came from the cache."""
    root = Path(root)
    if cache_dir is None:
        return _read(root, size), False
    cache_file = Path(cache_dir) / f"fer-{fingerprint(root, size)}.npz"
    if cache_file.is_file():
        t0 = time.perf_counter()
        with np.load(cache_file, allow_pickle=False) as z:
            report = DecodeReport()
            rep = json.loads(str(z["report"]))
            report.converted.update(rep["converted"])
            report.skipped = [(s["path"], s["reason"]) for s in rep["skipped"]]
            report.ignored_non_images = rep["ignored_non_images"]
            report.empty_class_folders = rep["empty_class_folders"]
            raw = RawData(z["images"], z["labels"], z["origin"], z["folder_split"], z["sources"], report)
        log.info("loaded %d images from cache %s in %.2fs", len(raw.labels), cache_file, time.perf_counter() - t0)
        return raw, True
    t0 = time.perf_counter()
    raw = _read(root, size)
    log.info("decoded %d images from %s in %.1fs", len(raw.labels), root, time.perf_counter() - t0)
    with atomic_open(cache_file, "wb") as fh:  # a crash never leaves a half-written cache behind
        np.savez(
            fh,
            images=raw.images,
            labels=raw.labels,
            origin=raw.origin,
            folder_split=raw.folder_split,
            sources=raw.sources,
            report=np.array(json.dumps(raw.report.to_dict())),
        )
    return raw, False
