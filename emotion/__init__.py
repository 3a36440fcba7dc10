"""emotion: facial-emotion recognition on FER2013."""

from typing import Any

from emotion.labels import FER2013_CLASSES

__all__ = ["FER2013_CLASSES", "Predictor", "load_pretrained"]


def load_pretrained(name: str = "default"):
    """The network shipped in ``emotion/weights`` (eval mode, class names and preprocessing inside)."""
    from emotion.models.pretrained import load_pretrained as _load

    return _load(name)


def __getattr__(name: str) -> Any:  # heavy imports only when asked for
    if name == "Predictor":
        from emotion.serve.predictor import Predictor

        return Predictor
    raise AttributeError(name)
