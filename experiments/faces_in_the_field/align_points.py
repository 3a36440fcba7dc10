"""bench.py with the aligned crop fitted on a subset of the five landmarks (a study; the shipped crop uses all five).

    python experiments/faces_in_the_field/align_points.py --points 0,1,2 [bench.py's arguments]

Landmarks in YuNet's order: 0, 1 eyes, 2 nose tip, 3, 4 mouth corners. The mouth corners move with the expression
(a smile widens them), so a fit without them might reproduce FER2013's framing better; this measures it.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np

import emotion.serve.faces as faces


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", required=True, help="landmark indices to fit the crop on, e.g. 0,1,2")
    a, rest = p.parse_known_args()
    points = [int(i) for i in a.points.split(",")]

    def alignment(landmarks: np.ndarray, size: int = 48) -> np.ndarray | None:
        marks = np.asarray(landmarks, np.float32)[points]
        return cv2.estimateAffinePartial2D(marks, faces.FER_LANDMARKS[points] * (size / 48.0))[0]

    faces.alignment = alignment  # aligned_crop looks it up in the module at each call
    sys.argv = ["bench.py", *rest]
    runpy.run_path(str(Path(__file__).with_name("bench.py")), run_name="__main__")


if __name__ == "__main__":
    main()
