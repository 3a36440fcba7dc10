"""Test-time augmentation: the views of a batch whose predictions are averaged (``none``, ``flip``, ``tencrop``).

One definition of the views in two flavours: :func:`views` on torch tensors (evaluation, training's test metrics)
and :func:`numpy_views` on uint8 arrays (serving, so that an ONNX model never loads torch); both crop at
:func:`crop_boxes` and resize bilinearly with half-pixel centres, and agree to float precision (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

TTA_MODES = ("none", "flip", "tencrop")
#: tencrop: side of the five crops as a share of the image side (44 of 48 px, ~0.84 of the area: within the
#: random-resized-crop range of the training augmentation), each resized back to the input size.
TENCROP_SIDE = 0.92


def check_tta(mode: str) -> str:
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {mode!r}")
    return mode


def crop_boxes(size: int, side: float = TENCROP_SIDE) -> list[tuple[int, int, int]]:
    """``(top, left, side)`` of the four corner crops and the centre crop of an ``S×S`` image."""
    c = round(side * size)
    m = (size - c) // 2
    return [(i, j, c) for i, j in ((0, 0), (0, size - c), (size - c, 0), (size - c, size - c), (m, m))]


def five_crops(x: torch.Tensor, side: float = TENCROP_SIDE) -> list[torch.Tensor]:
    """The four corner crops and the centre crop of ``N×C×S×S`` images, each resized back to ``S×S`` (bilinear)."""
    import torch.nn.functional as F

    if not x.is_floating_point():
        x = x.float() / 255.0  # the networks take uint8 or float in [0, 1]
    size = x.shape[-1]
    return [
        F.interpolate(x[..., i : i + c, j : j + c], size=(size, size), mode="bilinear", align_corners=False)
        for i, j, c in crop_boxes(size, side)
    ]


def views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """``flip`` adds the mirrored face; ``tencrop`` uses five crops (:func:`five_crops`) and their mirror images
    instead of the face."""
    import torch

    out = five_crops(x) if check_tta(mode) == "tencrop" else [x]
    if mode in ("flip", "tencrop"):
        out += [torch.flip(v, dims=[3]) for v in out]
    return out


def averaged(probabilities: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str) -> torch.Tensor:
    """The mean of ``probabilities(view)`` over the views of ``x``."""
    import torch

    return torch.stack([probabilities(v) for v in views(x, mode)]).mean(0)


def numpy_views(faces: np.ndarray, mode: str) -> list[np.ndarray]:
    """:func:`views` for ``N×S×S`` uint8 faces: ``none`` gives them back unchanged; the crops come back as float32 in
    [0, 1] (what the networks and ONNX exports take besides uint8), every view C-contiguous."""
    import cv2

    if check_tta(mode) == "tencrop":
        size = faces.shape[-1]
        x = faces.astype(np.float32) / 255.0
        out = [
            np.stack([cv2.resize(f[i : i + c, j : j + c], (size, size), interpolation=cv2.INTER_LINEAR) for f in x])
            for i, j, c in crop_boxes(size)
        ]
    else:
        out = [faces]
    if mode in ("flip", "tencrop"):
        out += [np.ascontiguousarray(v[:, :, ::-1]) for v in out]
    return out
