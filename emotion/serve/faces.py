"""Face detection with the Haar cascade shipped inside opencv-python 4.x (no downloads), and face crops."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from emotion.data.sources import to_gray_square

CASCADE = "haarcascade_frontalface_default.xml"


class StreamDetector(Protocol):
    """What the cam needs of a detector: boxes for each frame in order, and a fresh start for a new stream."""

    def reset(self) -> None: ...

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...


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


def iou(a: np.ndarray | tuple[int, ...], b: np.ndarray | tuple[int, ...]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = (int(v) for v in a)
    bx, by, bw, bh = (int(v) for v in b)
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


@dataclass
class VideoFaceDetector:
    """Faces of a video stream, from ``scanner.min_face`` pixels to the full frame height, for a fraction of the
    cost of a full-resolution search in every frame.

    Every ``scan_every`` frames the whole frame is searched by ``scanner`` (full resolution by default, so faces of
    ~50 px are found). In the frames between, every known face is re-found in a window around its last box
    (``search`` box widths on each side), resized so the face is ~``track_size`` px and searched over a few scales
    only, every ``track_every`` frames. A face that is not re-found keeps its box for ``max_missed`` frames, then is
    dropped. Call once per frame, in order; :meth:`reset` before another stream.
    """

    scanner: FaceDetector = field(default_factory=lambda: FaceDetector(scale_factor=1.2, detect_width=0, min_face=48))
    scan_every: int = 8
    track_every: int = 1
    track_size: int = 48
    search: float = 0.5
    max_missed: int = 4

    def __post_init__(self) -> None:
        if self.scan_every < 1 or self.track_every < 1:
            raise ValueError("scan_every and track_every must be >= 1")
        self.reset()

    def reset(self) -> None:
        self.frame_index = 0
        self.tracks: list[list[int]] = []  # [x, y, w, h, frames since last seen]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes ``N×4`` as (x, y, w, h) in frame pixels, largest first."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        i, self.frame_index = self.frame_index, self.frame_index + 1
        if i % self.scan_every == 0:
            self._merge(gray, self.scanner(gray))
        elif i % self.track_every == 0:
            self._follow(gray, self.tracks)
        self.tracks = [t for t in self.tracks if t[4] <= self.max_missed]
        if not self.tracks:
            return np.zeros((0, 4), np.int32)
        boxes = np.array([t[:4] for t in self.tracks], np.int32)
        return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")]

    def _follow(self, gray: np.ndarray, tracks: list[list[int]]) -> None:
        """Re-find each of ``tracks`` in its window; one not found ages by a frame."""
        for track in tracks:
            box = self._refind(gray, track[:4])
            track[:] = [*box, 0] if box is not None else [*track[:4], track[4] + 1]
        self._dedupe()

    def _merge(self, gray: np.ndarray, found: np.ndarray) -> None:
        """A scan's boxes replace the tracks they overlap; tracks it missed are re-found in their window."""
        matched = [False] * len(self.tracks)
        new = []
        for box in found:
            j = max(range(len(self.tracks)), key=lambda k: iou(self.tracks[k][:4], box), default=None)
            if j is not None and not matched[j] and iou(self.tracks[j][:4], box) > 0.2:
                self.tracks[j][:], matched[j] = [*map(int, box), 0], True
            else:
                new.append([*map(int, box), 0])
        self._follow(gray, [t for t, m in zip(self.tracks, matched) if not m])
        self.tracks += new
        self._dedupe()

    def _refind(self, gray: np.ndarray, box: list[int]) -> tuple[int, int, int, int] | None:
        x, y, w, h = box
        pad = int(round(self.search * max(w, h)))
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(gray.shape[1], x + w + pad), min(gray.shape[0], y + h + pad)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = self.track_size / max(w, h)
        window = cv2.resize(
            gray[y0:y1, x0:x1],
            None,
            fx=scale,
            fy=scale,
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        lo, hi = int(self.track_size * 0.7), int(self.track_size * 1.45)
        boxes = self.scanner.cascade.detectMultiScale(window, 1.1, 3, minSize=(lo, lo), maxSize=(hi, hi))
        if len(boxes) == 0:
            return None
        cx, cy = (x + w / 2 - x0) * scale, (y + h / 2 - y0) * scale
        bx, by, bw, bh = min(boxes, key=lambda b: (b[0] + b[2] / 2 - cx) ** 2 + (b[1] + b[3] / 2 - cy) ** 2)
        return (
            int(round(x0 + bx / scale)),
            int(round(y0 + by / scale)),
            int(round(bw / scale)),
            int(round(bh / scale)),
        )

    def _dedupe(self) -> None:
        kept: list[list[int]] = []
        for t in sorted(self.tracks, key=lambda t: t[4]):  # freshest first
            if all(iou(t[:4], k[:4]) < 0.4 for k in kept):
                kept.append(t)
        self.tracks = kept


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
