"""emotion: facial-emotion recognition on FER2013."""

import functools
from typing import Any

from emotion.labels import FER2013_CLASSES

__all__ = ["FER2013_CLASSES", "Predictor", "detect_emotions", "load_pretrained"]


def load_pretrained(name: str = "default"):
    """The network shipped in ``emotion/weights`` (eval mode, class names and preprocessing inside)."""
    from emotion.models.pretrained import load_pretrained as _load

    return _load(name)


def detect_emotions(image: Any, model: str = "default", colour: str = "bgr", min_face: int | None = None) -> list:
    """Every face of ``image`` (a path or http(s) URL, an image file's bytes or a binary file, a PIL image or an
    array; ``colour`` gives an array's channel order, ``bgr`` or ``rgb``) with its box, label, confidence and
    probabilities, largest face first — the shipped default model unless ``model`` names another shipped model or a
    model file. ``min_face``: the smallest face to find, in pixels (default 24, ``predict --min-face``'s; larger is
    faster on large photos). The predictor is loaded once per model and ``min_face``."""
    return _predictor(model, min_face).predict(image, colour=colour)


@functools.lru_cache(maxsize=4)
def _predictor(model: str, min_face: int | None):
    from dataclasses import replace

    from emotion.serve.faces import photo_detector
    from emotion.serve.predictor import Predictor

    detector = photo_detector() if min_face is None else replace(photo_detector(), min_face=min_face)
    return Predictor.from_pretrained(model, detector=detector)


def __getattr__(name: str) -> Any:  # heavy imports only when asked for
    if name == "Predictor":
        from emotion.serve.predictor import Predictor

        return Predictor
    raise AttributeError(name)
