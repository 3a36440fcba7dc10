"""bench.py with each found face classified as the average over framings around its aligned crop (a study).

    python experiments/faces_in_the_field/framing_tta.py --turns 0,-8,8 --scales 1,0.92,1.08 [bench.py's arguments]

The aligned crop levels every face onto one template, while FER2013's own faces are not aligned (heads roll, faces
sit at different scales): the detected crop differs from the face's original framing by ±13° and ±18% (residuals.py).
Averaging the network's probabilities over crops turned and scaled about the crop's centre marginalises over that
unknown framing, as flip TTA does over mirroring. Every (turn, scale) pair is one view; the detector and its face
check see the shipped crop, unchanged.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
from align_points import fitted

import emotion.serve.faces as faces
from emotion.serve.images import as_frame
from emotion.serve.predictor import Face, Predictor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", default="0", help="degrees, counter-clockwise, e.g. 0,-8,8")
    p.add_argument("--scales", default="1", help="the face's size in the crop relative to the template, e.g. 1,0.92")
    p.add_argument("--fit", choices=("lsq", "ransac"), default="lsq", help="the alignment's fit (align_points.py)")
    p.add_argument("--crop-views", action="store_true", help="the crop accuracy with the same views of each crop")
    a, rest = p.parse_known_args()
    faces.alignment = fitted([0, 1, 2, 3, 4], a.fit)  # every crop, the face check's included
    views = [(float(t), float(s)) for t in a.turns.split(",") for s in a.scales.split(",")]

    def framed_crops(
        frame: np.ndarray, landmarks: np.ndarray, size: int, zoom: float, turn: float, scale: float
    ) -> np.ndarray:
        jitter = np.vstack([cv2.getRotationMatrix2D((size / 2, size / 2), turn, scale), [0, 0, 1]])
        shipped = faces.alignment

        def alignment(marks: np.ndarray, s: int = size, z: float = zoom) -> np.ndarray | None:
            m = shipped(marks, s, z)
            return None if m is None else (jitter @ np.vstack([m, [0, 0, 1]]))[:2]

        faces.alignment = alignment  # aligned_crop looks it up in the module at each call
        try:
            return np.stack([faces.aligned_crop(frame, m, size, zoom) for m in landmarks])
        finally:
            faces.alignment = shipped

    shipped_predict, shipped_classify = Predictor.predict, Predictor.classify
    inside_predict = [False]

    def predict(self: Predictor, image, boxes=None, colour="bgr", landmarks=None) -> list[Face]:  # noqa: ANN001
        frame = as_frame(image, colour)
        if boxes is None:
            boxes, landmarks = self.detector.detect(frame)
        if landmarks is None or len(landmarks) == 0:
            return shipped_predict(self, frame, boxes, landmarks=landmarks)
        inside_predict[0] = True
        try:
            crops = [framed_crops(frame, landmarks, self.input_size, self.zoom, t, s) for t, s in views]
            probs = np.mean([self.classify(c) for c in crops], 0)
        finally:
            inside_predict[0] = False
        return [Face(tuple(int(v) for v in b), q, self.class_names) for b, q in zip(boxes, probs)]

    def classify(self: Predictor, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outside ``predict`` (bench.py's crop accuracy), with ``--crop-views``: the same views of the 48×48 crop."""
        if inside_predict[0] or not a.crop_views or len(crops) == 0:
            return shipped_classify(self, crops, batch_size)
        size = crops.shape[-1]
        out = []
        for t, s in views:
            m = cv2.getRotationMatrix2D((size / 2, size / 2), t, s)
            warped = np.stack([cv2.warpAffine(c, m, (size, size), borderMode=cv2.BORDER_REPLICATE) for c in crops])
            out.append(shipped_classify(self, warped, batch_size))
        return np.mean(out, 0)

    Predictor.predict, Predictor.classify = predict, classify
    sys.argv = ["bench.py", *rest]
    runpy.run_path(str(Path(__file__).with_name("bench.py")), run_name="__main__")


if __name__ == "__main__":
    main()
