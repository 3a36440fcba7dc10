from emotion.data.augment import BatchAugment
from emotion.data.datamodule import FER2013DataModule
from emotion.errors import DatasetError

__all__ = ["BatchAugment", "DatasetError", "FER2013DataModule"]
