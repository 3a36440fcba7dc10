"""Which evaluated faces have a near-identical twin in the training split (the test itself:
:mod:`emotion.data.twins`), and leaving them out of an evaluation."""

from __future__ import annotations

import numpy as np

from emotion.data.cache import load_raw
from emotion.data.datamodule import FER2013DataModule
from emotion.data.twins import TWIN_SIZE, has_twin_in
from emotion.errors import DatasetError


def twin_mask(dm: FER2013DataModule, split: str) -> np.ndarray:
    """Boolean mask over ``split`` (val or test) of a set-up DataModule, in evaluation order: True where a face has
    a near-identical twin in the training split."""
    if split not in ("val", "test"):
        raise DatasetError(f"exclude=twins scores val or test without their training twins, not {split!r}")
    if not dm.has_training_faces():
        raise DatasetError(
            f"exclude=twins needs the training faces beside the evaluated ones, and {dm.root} has none: "
            "give data.root=a full FER2013 root (train/ and test/)"
        )
    images = dm.raw.images
    if dm.image_size != TWIN_SIZE:  # twins are a fact of the data set: judged on the stored 48-px faces, so a
        stored, _ = load_raw(dm.resolve_root(), TWIN_SIZE, dm.cache_dir)  # 40-px model leaves out the same faces
        if not np.array_equal(stored.sources, dm.raw.sources):
            raise DatasetError(f"{dm.root} changed while it was read; run again")
        images = stored.images
    return has_twin_in(images[getattr(dm.splits, split)], images[dm.splits.train])


def drop_twins(dm: FER2013DataModule, split: str) -> int:
    """Leave out of ``split`` (val or test) every face with a near-identical twin in the training split; returns
    how many were left out (also recorded in the split protocol)."""
    twins = twin_mask(dm, split)
    setattr(dm.splits, split, getattr(dm.splits, split)[~twins])
    dm.splits.protocol[f"{split}_twins_excluded"] = int(twins.sum())
    return int(twins.sum())
