"""An exported ONNX model behind the :class:`EmotionNet` interface, so that ``evaluate`` scores exports as it scores
checkpoints (ONNX Runtime does the work; there is nothing to train)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion.models.base import EmotionNet
from emotion.models.onnx_session import open_onnx


class OnnxNet(EmotionNet):
    arch = "onnx"

    def __init__(self, path: str | Path) -> None:
        session, spec = open_onnx(path)
        # The graph applies normalisation and the calibrated softmax itself: nothing more to do here.
        super().__init__(class_names=spec["class_names"], input_size=spec["input_size"])
        self.session, self._spec = session, spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels → log-probabilities (a softmax of them gives back the graph's probabilities)."""
        pixels = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        probs = self.session.run(None, {"pixels": np.ascontiguousarray(pixels.cpu().numpy())})[0]
        return torch.from_numpy(probs).clamp_min(1e-12).log().to(x.device)

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)
