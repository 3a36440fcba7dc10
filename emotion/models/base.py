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
from emotion.models.input_norm import DEFAULT_INPUT_NORM, INPUT_NORMS
from emotion.ranges import check

# Mean and standard deviation of FER2013's 28,709 training pixels, scaled to [0, 1].
FER2013_MEAN = 0.5077
FER2013_STD = 0.2550

# Variance floor of per-face scaling (deviation 0.01, 2.5 grey levels): a flat picture is not blown up to noise.
PER_FACE_MIN_VAR = 1e-4


def check_probability(name: str, value: float) -> float:
    """A dropout rate of the network (``model.net.<name>``), held to :data:`emotion.ranges.RANGES`."""
    return float(check(f"model.net.{name}", value))


class EmotionNet(nn.Module):
    """Base class: holds class names, input size and normalisation; subclasses implement ``features_to_logits``."""

    arch: str = ""

    def __init__(
        self,
        class_names: tuple[str, ...] | list[str] = FER2013_CLASSES,
        input_size: int = 48,
        mean: float = FER2013_MEAN,
        std: float = FER2013_STD,
        temperature: float = 1.0,
        input_norm: str = DEFAULT_INPUT_NORM,
    ) -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}; got {input_norm!r}")
        self.input_norm = input_norm
        if not class_names:
            raise ValueError("class_names must list at least one class")
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.class_names: tuple[str, ...] = tuple(str(c) for c in class_names)
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.temperature = float(temperature)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite value > 0, got {temperature}")
        self._arch_kwargs: dict[str, Any] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels (uint8 0..255 or float 0..1) → the normalised float input of the first layer."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.input_norm == "per_face":
            var, mean = torch.var_mean(x, dim=(-2, -1), keepdim=True, correction=0)
            return (x - mean) * torch.rsqrt(var + PER_FACE_MIN_VAR)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels → logits (no softmax: the loss applies log-softmax itself). Always float32, also under bf16
        autocast (``trainer.precision=bf16-mixed``), so that losses, probabilities and metrics keep full precision."""
        logits = self.logits(self.normalize(x))
        return logits if logits.dtype == torch.float32 else logits.float()

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits of this network → probabilities, calibrated by its temperature (1 until ``emotion.calibrate``)."""
        return torch.softmax(logits / self.temperature, dim=1)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.probabilities(self(x))

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this network and feed it: saved in every checkpoint and export."""
        return {
            "arch": self.arch,
            "arch_kwargs": dict(self._arch_kwargs),
            "class_names": list(self.class_names),
            "input_size": self.input_size,
            "mean": float(self.mean),
            "std": float(self.std),
            "input_norm": self.input_norm,
            "temperature": self.temperature,
            "input": "grayscale, raw pixels uint8 0..255 or float 0..1, shape N x 1 x H x W",
        }
