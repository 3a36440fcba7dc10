"""Data: sources (decoding, the face crop shared with serving), splits, cache, augmentation, the DataModule.

The DataModule and the augmentation need Lightning and torch; they are imported on first use, so serving code that
only needs :mod:`emotion.data.sources` (the face crop, the image extensions) never pays for the training stack.
"""

from typing import Any

from emotion.errors import DatasetError

__all__ = ["BatchAugment", "BatchMix", "DatasetError", "FER2013DataModule"]


def __getattr__(name: str) -> Any:
    if name == "BatchAugment":
        from emotion.data.augment import BatchAugment

        return BatchAugment
    if name == "BatchMix":
        from emotion.data.mix import BatchMix

        return BatchMix
    if name == "FER2013DataModule":
        from emotion.data.datamodule import FER2013DataModule

        return FER2013DataModule
    raise AttributeError(f"module 'emotion.data' has no attribute {name!r}")
