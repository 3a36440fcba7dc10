"""The face/non-face check: a small network that tells, from a detection's 48x48 aligned crop, whether it is a face
or a texture YuNet mistook for one (a page of text, a star field, fur). Trained on training faces and on textures
the faces-in-the-field benchmark never shows (``experiments/faces_in_the_field/face_check.py``); ONNX, no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion.models.onnx_session import open_onnx

FACE_CHECK = Path(__file__).resolve().parents[1] / "weights" / "face_check.onnx"


class FaceCheck:
    """``check(crops)`` → P(face) for ``N×48×48`` uint8 aligned crops (:func:`emotion.serve.faces.aligned_crop`)."""

    def __init__(self, path: str | Path = FACE_CHECK) -> None:
        self.session, self.spec = open_onnx(path, threads=1, key="face_check_spec")
        self.size = int(self.spec["input_size"])

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if crops.shape[1:] != (self.size, self.size):
            raise ValueError(f"the face check takes N×{self.size}×{self.size} crops, got {crops.shape}")
        if len(crops) == 0:
            return np.zeros(0, np.float32)
        pixels = (crops.astype(np.float32) / 255.0)[:, None]
        return self.session.run(None, {"pixels": pixels})[0]
