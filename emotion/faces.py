"""Face detection with the Haar cascade shipped inside opencv-python 4.x (no downloads), and face crops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotion.data.sources import to_gray_square

CASCADE = "haarcascade_frontalface_default.xml"


@dataclass
class FaceDetector:
    """Detects faces on a copy of the frame downscaled to ``detect_width`` pixels (boxes in full-frame pixels)."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 24  # pixels in the downscaled frame
    detect_width: int = 320
    min_face: int = 0  # smallest face to look for, in full-frame pixels (larger = fewer scales = faster)

    def __post_init__(self) -> None:
        path = Path(cv2.data.haarcascades) / CASCADE
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"could not load {path}; reinstall opencv-python>=4.10,<5 (5.0 dropped the cascades)")

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes ``N×4`` as (x, y, w, h), largest first."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self.detect_width / gray.shape[1]) if self.detect_width else 1.0
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        min_size = max(self.min_size, round(self.min_face * scale))
        boxes = self.cascade.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_size, min_size)
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), np.int32)
        boxes = np.round(np.asarray(boxes, np.float64) / scale).astype(np.int32)
        return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3])]


def crop_faces(frame: np.ndarray, boxes: np.ndarray, size: int = 48, margin: float = 0.1) -> np.ndarray:
    """Square crops around ``boxes`` enlarged by ``margin`` per side → ``N×size×size`` uint8 grayscale,
    converted exactly as the training data was (:func:`emotion.data.sources.to_gray_square`)."""
    h, w = frame.shape[:2]
    crops = []
    for x, y, bw, bh in boxes:
        side = int(round(max(bw, bh) * (1 + 2 * margin)))
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
        src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else frame
        crops.append(to_gray_square(src[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side], size))
    return np.stack(crops) if crops else np.zeros((0, size, size), np.uint8)
