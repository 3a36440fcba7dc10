"""One inference API for every consumer (predict CLI, webcam demo, song recommender).

``Predictor`` loads a Lightning checkpoint, a ``.safetensors`` file (e.g. the shipped model) or an ``.onnx`` export
(run with ONNX Runtime), detects faces, crops them exactly as training data was prepared, and classifies all faces
of a frame in one batch. Class names come from the model file, never from a list in the app. ``tta`` (``none``,
``flip``, ``tencrop``: :mod:`emotion.models.tta`) averages the predictions over views of each face, as
``python -m emotion.evaluate tta=…`` does — for photos, at 2× or 10× the cost; the webcam keeps one view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotion.data.sources import to_gray_square
from emotion.errors import ModelFileError
from emotion.models.tta import check_tta, numpy_views
from emotion.serve.faces import CROP_ZOOM, Detector, crop_faces, photo_detector
from emotion.serve.images import as_frame


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    probs: np.ndarray  # one probability per class, in class_names order
    class_names: tuple[str, ...]
    track: int | None = None  # in a video: the id of the face's track (the cam's tracker sets it)

    @property
    def label(self) -> str:
        return self.class_names[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    def to_dict(self) -> dict[str, Any]:
        return {
            **({"track": self.track} if self.track is not None else {}),
            "box": [int(v) for v in self.box],
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "probs": {c: round(float(p), 4) for c, p in zip(self.class_names, self.probs)},
        }


class _TorchBackend:
    """A .ckpt or .safetensors model in PyTorch (imported here only: an .onnx model never loads torch)."""

    def __init__(self, path: str | Path) -> None:
        try:
            import torch
        except ModuleNotFoundError:
            raise ModelFileError(
                f"{path} is a PyTorch model and this installation has no torch (a serving install): give an .onnx "
                "export (python -m emotion.export format=onnx, where torch is installed), a shipped model with an "
                "ONNX export (the default), or install the training stack: pip install 'emotion[train]'"
            ) from None

        from emotion.models.checkpoint import load_net

        self.torch = torch
        self.net = load_net(path)
        self.spec = self.net.spec()

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(faces).unsqueeze(1)  # uint8 or float N×1×S×S: the network normalises it
            return self.net.probabilities(self.net(x)).numpy()


class _OnnxBackend:
    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from emotion.models.onnx_session import open_onnx

        self.session, self.spec = open_onnx(path, threads)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        x = (faces.astype(np.float32) / 255.0 if faces.dtype == np.uint8 else faces.astype(np.float32))[:, None]
        return self.session.run(None, {"pixels": x})[0]


@dataclass
class Predictor:
    """``detector``: a YuNet (landmarks: faces are aligned onto FER2013's framing, cut ``zoom`` times closer) or a
    Haar detector (a square of ``margin`` around each box), or None for pre-cropped faces."""

    model_path: str
    detector: Detector | None = field(default_factory=photo_detector)
    margin: float = 0.1
    tta: str = "none"
    zoom: float = CROP_ZOOM

    def __post_init__(self) -> None:
        check_tta(self.tta)
        path = str(self.model_path)
        self.backend = _OnnxBackend(path) if path.endswith(".onnx") else _TorchBackend(path)
        self.class_names: tuple[str, ...] = tuple(self.backend.spec["class_names"])
        self.input_size: int = int(self.backend.spec["input_size"])

    @classmethod
    def from_pretrained(cls, name: str = "default", **kwargs: Any) -> Predictor:
        from emotion.models.pretrained import model_file

        return cls(str(model_file(name, serving=True)), **kwargs)

    def classify(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``N×S×S`` uint8 grayscale faces → ``N×K`` probabilities (batched calls of at most ``batch_size``)."""
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        faces = np.ascontiguousarray(faces, dtype=np.uint8)
        per_view = [
            np.concatenate([self.backend(v[i : i + batch_size]) for i in range(0, len(v), batch_size)])
            for v in numpy_views(faces, self.tta)
        ]
        return per_view[0] if len(per_view) == 1 else np.mean(per_view, axis=0)

    def predict_crops(self, images: list[np.ndarray]) -> list[Face]:
        """Pre-cropped faces (any size, gray/BGR, 8/16-bit) → one :class:`Face` each; box = the whole image."""
        faces = np.stack([to_gray_square(img, self.input_size) for img in images]) if images else np.zeros((0,))
        probs = self.classify(faces)
        return [Face((0, 0, img.shape[1], img.shape[0]), p, self.class_names) for img, p in zip(images, probs)]

    def predict(
        self,
        image: Any,
        boxes: np.ndarray | None = None,
        colour: str = "bgr",
        landmarks: np.ndarray | None = None,
    ) -> list[Face]:
        """Detect (unless ``boxes`` are given) and classify every face of an image: a file path, a PIL image or an
        array (gray, or colour in ``colour`` order: ``bgr`` as OpenCV gives it, ``rgb`` as PIL/matplotlib do).
        Given ``boxes``, their ``landmarks`` (``N×5×2``, YuNet's order) align the crops; without, squares are cut."""
        frame = as_frame(image, colour)
        if boxes is None:
            if self.detector is None:
                raise ValueError("no face detector configured; pass boxes or pre-cropped faces")
            boxes, landmarks = self.detector.detect(frame)
        crops = crop_faces(frame, boxes, self.input_size, self.margin, landmarks, self.zoom)
        probs = self.classify(crops)
        return [Face(tuple(int(v) for v in b), p, self.class_names) for b, p in zip(boxes, probs)]
