"""Test-time augmentation: the views of a batch whose predictions are averaged (``none``, ``flip``, ``tencrop``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

TTA_MODES = ("none", "flip", "tencrop")
#: tencrop: side of the five crops as a share of the image side (44 of 48 px, ~0.84 of the area: within the
#: random-resized-crop range of the training augmentation), each resized back to the input size.
TENCROP_SIDE = 0.92


def check_tta(mode: str) -> str:
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {mode!r}")
    return mode


def five_crops(x: torch.Tensor, side: float = TENCROP_SIDE) -> list[torch.Tensor]:
    """The four corner crops and the centre crop of ``N×C×S×S`` images, each resized back to ``S×S`` (bilinear)."""
    if not x.is_floating_point():
        x = x.float() / 255.0  # the networks take uint8 or float in [0, 1]
    size = x.shape[-1]
    c = round(side * size)
    m = (size - c) // 2
    corners = [(0, 0), (0, size - c), (size - c, 0), (size - c, size - c), (m, m)]
    return [
        F.interpolate(x[..., i : i + c, j : j + c], size=(size, size), mode="bilinear", align_corners=False)
        for i, j in corners
    ]


def views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """``flip`` adds the mirrored face; ``tencrop`` uses five crops (:func:`five_crops`) and their mirror images
    instead of the face."""
    out = five_crops(x) if check_tta(mode) == "tencrop" else [x]
    if mode in ("flip", "tencrop"):
        out += [torch.flip(v, dims=[3]) for v in out]
    return out


def averaged(probabilities: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str) -> torch.Tensor:
    """The mean of ``probabilities(view)`` over the views of ``x``."""
    return torch.stack([probabilities(v) for v in views(x, mode)]).mean(0)
