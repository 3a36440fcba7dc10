"""emotion: facial-emotion recognition on FER2013."""

from emotion.labels import FER2013_CLASSES

__all__ = ["FER2013_CLASSES"]
