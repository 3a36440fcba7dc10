"""Network architectures (EmotionCNN, EmotionVGG, ensembles), model files and the LightningModule.

The names below are imported on first use, so ``emotion.models.pretrained`` (resolving a shipped name) and the
other light modules of this folder load without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "EmotionNet": "base",
    "FER2013_MEAN": "base",
    "FER2013_STD": "base",
    "EmotionCNN": "emotion_cnn",
    "EmotionVGG": "emotion_vgg",
    "EmotionEnsemble": "ensemble",
    "ARCHITECTURES": "registry",
    "build_from_spec": "registry",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"emotion.models.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'emotion.models' has no attribute {name!r}")
