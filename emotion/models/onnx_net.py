"""An exported ONNX model behind the :class:`EmotionNet` interface, so that ``evaluate`` scores exports as it scores
checkpoints (ONNX Runtime does the work; there is nothing to train)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotion.errors import ModelFileError
from emotion.models.base import EmotionNet


class OnnxNet(EmotionNet):
    arch = "onnx"

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        meta = session.get_modelmeta().custom_metadata_map
        if "emotion_spec" not in meta:
            raise ModelFileError(f"{path} has no 'emotion_spec' metadata: export it with python -m emotion.export")
        self._spec: dict[str, Any] = json.loads(meta["emotion_spec"])
        # The graph applies normalisation and the calibrated softmax itself: nothing more to do here.
        super().__init__(class_names=self._spec["class_names"], input_size=self._spec["input_size"])
        self.session = session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels → log-probabilities (a softmax of them gives back the graph's probabilities)."""
        pixels = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        probs = self.session.run(None, {"pixels": np.ascontiguousarray(pixels.cpu().numpy())})[0]
        return torch.from_numpy(probs).clamp_min(1e-12).log().to(x.device)

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)
