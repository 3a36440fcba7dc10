"""How a network scales its input pixels, by name; torch-free, so that serving reads old exports' specs alike."""

from __future__ import annotations

from typing import Any

#: ``dataset`` subtracts FER2013's mean and divides by its deviation (the same for every face); ``per_face`` uses
#: each face's own mean and deviation, so that a brighter or lower-contrast picture of the same face (a lamp, a
#: camera's exposure) gives the network the same input (``emotion.models.base.EmotionNet.normalize``).
INPUT_NORMS = ("dataset", "per_face")
DEFAULT_INPUT_NORM = "dataset"


def input_norm_of(spec: dict[str, Any]) -> str:
    """A model file's input scaling; files written before the option scaled by the dataset."""
    return str(spec.get("input_norm", DEFAULT_INPUT_NORM))
