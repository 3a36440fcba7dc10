"""The split protocol: the official FER2013 split where the data carries it, a stated fallback where not."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from emotion.data.sources import RawData

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: np.ndarray  # indices into RawData
    val: np.ndarray
    test: np.ndarray
    protocol: dict

    def describe(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.protocol.items() if k in ("train", "val", "test"))


def stratified_holdout(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded per-class random ``fraction`` of ``indices`` (at least one per class that has two or more)."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels[indices]):
        members = indices[labels[indices] == c]
        k = int(round(fraction * len(members)))
        if k == 0 and len(members) >= 2 and fraction > 0:
            k = 1
        held.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)


def assign_splits(raw: RawData, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """train = Training, val = PublicTest, test = PrivateTest when file names / ``Usage`` carry them.

    Fallbacks (each stated in ``protocol``): no PublicTest → a seeded stratified ``val_fraction`` of train; no
    PrivateTest → unprefixed files of ``test/``, else PublicTest (then test equals val and is not held out).
    """
    idx = np.arange(len(raw.labels))
    origin, folder = raw.origin, raw.folder_split
    train = idx[(origin == "Training") | ((origin == "") & np.isin(folder, ["train", "csv"]))]
    public = idx[origin == "PublicTest"]
    private = idx[origin == "PrivateTest"]
    plain_test = idx[(origin == "") & (folder == "test")]
    notes: list[str] = []

    if len(public):
        val, val_desc = public, f"PublicTest ({len(public)})"
    else:
        val = stratified_holdout(train, raw.labels, val_fraction, seed)
        train = np.setdiff1d(train, val)
        val_desc = f"stratified {val_fraction:.0%} of train, seed {seed} ({len(val)})"
        if len(val):
            notes.append("no PublicTest files: validation carved from train")

    if len(private):
        test, test_desc = private, f"PrivateTest ({len(private)})"
    elif len(plain_test):
        test, test_desc = plain_test, f"test/ folder without split prefixes ({len(plain_test)})"
    elif len(public):
        test, test_desc = public, f"PublicTest ({len(public)}) = val: PrivateTest absent, test is NOT held out"
        notes.append("PrivateTest absent: test metrics are PublicTest metrics (same as validation)")
    else:
        test, test_desc = np.zeros(0, np.int64), "none"

    protocol = {
        "train": f"{'Training' if (origin[train] == 'Training').any() else 'train'} ({len(train)})",
        "val": val_desc,
        "test": test_desc,
        "notes": notes,
    }
    return Splits(train=train, val=val, test=test, protocol=protocol)
