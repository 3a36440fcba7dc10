"""bench.py with the aligned crop fitted another way (a study; the shipped crop: all five landmarks, least squares).

    python experiments/faces_in_the_field/align_points.py [--points 0,1,2] [--fit lsq|ransac] [bench.py's arguments]

Landmarks in YuNet's order: 0, 1 eyes, 2 nose tip, 3, 4 mouth corners. The mouth corners move with the expression
(a smile widens them), so a fit without them might reproduce FER2013's framing better; ``--points`` measures it.
``--fit ransac`` is the fit shipped until 2026-12-04 (``cv2.estimateAffinePartial2D``: RANSAC with a 3-px threshold
in the 48-px crop, refined on its inliers); ``lsq`` is least squares on every point given, as
:func:`emotion.serve.faces.alignment` fits all five. Every run prints how many fits RANSAC would leave points out of.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

import emotion.serve.faces as faces


def fitted(points: list[int], fit: str, left_out: np.ndarray | None = None) -> Callable[..., np.ndarray | None]:
    """An ``alignment(landmarks, size, zoom)`` for :mod:`emotion.serve.faces` fitted on ``points`` by ``fit``; counts in
    ``left_out[k]`` the fits RANSAC leaves ``k`` points out of."""

    def alignment(landmarks: np.ndarray, size: int = 48, zoom: float = 1.0) -> np.ndarray | None:
        marks = np.asarray(landmarks, np.float32)[points]
        target = ((faces.FER_LANDMARKS[points] - 24.0) * zoom + 24.0) * (size / 48.0)
        matrix, inliers = cv2.estimateAffinePartial2D(marks, target)
        if left_out is not None and inliers is not None:
            left_out[len(points) - int(inliers.sum())] += 1
        return matrix if fit == "ransac" else faces.similarity(marks, target)

    return alignment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", default="0,1,2,3,4", help="landmark indices to fit the crop on, e.g. 0,1,2")
    p.add_argument("--fit", choices=("lsq", "ransac"), default="lsq")
    a, rest = p.parse_known_args()
    points = [int(i) for i in a.points.split(",")]
    left_out = np.zeros(len(points) + 1, int)
    faces.alignment = fitted(points, a.fit, left_out)  # aligned_crop looks it up in the module at each call
    sys.argv = ["bench.py", *rest]
    runpy.run_path(str(Path(__file__).with_name("bench.py")), run_name="__main__")
    print("alignment fits (crops for the face check and the model) by points RANSAC leaves out:", left_out.tolist())


if __name__ == "__main__":
    main()
