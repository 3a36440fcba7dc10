"""What every emotion network carries: its class names and its input preprocessing.

Consumers feed raw pixels (uint8 0..255 or float 0..1, shape ``N×1×48×48``); the network normalises them with
buffers that are saved with its weights, so training, evaluation, export and the apps cannot disagree.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from emotion.labels import FER2013_CLASSES
from emotion.models.sharpness import SIGMAS, blur_matrices, match_sharpness

# Mean and standard deviation of FER2013's 28,709 training pixels, scaled to [0, 1].
FER2013_MEAN = 0.5077
FER2013_STD = 0.2550


def check_probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}; fix it in the model config (conf/model/).")
    return float(value)


class EmotionNet(nn.Module):
    """Base class: holds class names, input size and normalisation; subclasses implement ``features_to_logits``."""

    arch: str = ""

    def __init__(
        self,
        class_names: tuple[str, ...] | list[str] = FER2013_CLASSES,
        input_size: int = 48,
        mean: float = FER2013_MEAN,
        std: float = FER2013_STD,
        sharpness: float = 0.0,
        sharpness_sigmas: tuple[float, ...] | list[float] | None = None,
        sharpness_round: bool = False,
    ) -> None:
        super().__init__()
        if not class_names:
            raise ValueError("class_names must list at least one class")
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.class_names: tuple[str, ...] = tuple(str(c) for c in class_names)
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.sharpness = 0.0
        self.sharpness_sigmas: tuple[float, ...] = SIGMAS
        self.sharpness_round = False
        self.set_sharpness(sharpness, sharpness_sigmas, sharpness_round)
        self._arch_kwargs: dict[str, Any] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_sharpness(
        self,
        target: float | None,
        sigmas: tuple[float, ...] | list[float] | None = None,
        round_to_8bit: bool | None = None,
    ) -> None:
        """Laplacian variance (0..1 pixel scale) that inputs are blurred towards; 0 or None switches matching off.

        ``sigmas`` are the candidate Gaussian blurs (pixels; None keeps the current ones, by default
        :data:`~emotion.models.sharpness.SIGMAS`); ``round_to_8bit`` rounds blurred candidates to 8-bit levels.
        """
        target = float(target or 0.0)
        if not math.isfinite(target) or target < 0:
            raise ValueError(f"sharpness must be a finite value >= 0, got {target}")
        if sigmas is not None:
            sigmas = tuple(float(s) for s in sigmas)
            if not sigmas or not all(math.isfinite(s) and s > 0 for s in sigmas):
                raise ValueError(f"sharpness sigmas must be a non-empty list of blurs > 0 (pixels), got {sigmas}")
            self.sharpness_sigmas = sigmas
        if round_to_8bit is not None:
            self.sharpness_round = bool(round_to_8bit)
        device = self.mean.device
        self.register_buffer(
            "blur_mats", blur_matrices(self.input_size, self.sharpness_sigmas).to(device), persistent=False
        )
        self.sharpness = target

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels (uint8 0..255 or float 0..1) → the normalised float input of the first layer.

        With a sharpness target (see :mod:`emotion.models.sharpness`), inputs sharper than the training faces
        are blurred to match them first — in training, evaluation, export and the apps alike.
        """
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.sharpness > 0:
            x = match_sharpness(x, self.sharpness, self.blur_mats, self.sharpness_round)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels → logits (no softmax: the loss applies log-softmax itself)."""
        return self.logits(self.normalize(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x), dim=1)

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this network and feed it: saved in every checkpoint and export."""
        return {
            "arch": self.arch,
            "arch_kwargs": dict(self._arch_kwargs),
            "class_names": list(self.class_names),
            "input_size": self.input_size,
            "mean": float(self.mean),
            "std": float(self.std),
            "sharpness": self.sharpness,
            "sharpness_sigmas": list(self.sharpness_sigmas),
            "sharpness_round": self.sharpness_round,
            "input": "grayscale, raw pixels uint8 0..255 or float 0..1, shape N x 1 x H x W",
        }
