"""Fit FER2013's face framing: where YuNet's five landmarks lie in the 48x48 training faces.

    python experiments/faces_in_the_field/fit_template.py [--data DIR] [--n 3000]

Training faces (never PublicTest) are placed into scenes (``scenes.py``), YuNet finds them again, and each found
face's landmarks are mapped back through the inverse of its placement into the face's own 48x48 pixels. The median
over faces is printed as ``FER_LANDMARKS`` for ``emotion/serve/faces.py``, with the spread.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import match, scenes  # noqa: E402

from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.serve.faces import YuNetDetector  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--n", type=int, default=3000)
    a = p.parse_args()
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays("train")
    detector = YuNetDetector()
    points = []
    for scene in scenes(images, labels, seed=1, n=a.n, extra=0.0):
        boxes, marks = detector.detect(scene.frame)
        for face in scene.faces:
            i = match(face, boxes)
            if i is not None:
                inverse = cv2.invertAffineTransform(face["matrix"])
                points.append(cv2.transform(marks[i][None], inverse)[0])
    points = np.array(points)
    median = np.median(points, axis=0)
    spread = np.median(np.abs(points - median), axis=0)
    print(f"{len(points)} of {a.n} training faces found; landmarks in 48x48 FER2013 pixels (median, MAD):")
    for name, m, s in zip(
        ("eye (image left)", "eye (image right)", "nose tip", "mouth left", "mouth right"), median, spread
    ):
        print(f"  {name:18s} ({m[0]:5.2f}, {m[1]:5.2f})  ± ({s[0]:.2f}, {s[1]:.2f})")
    print("FER_LANDMARKS = " + np.array2string(np.round(median, 2), separator=", "))


if __name__ == "__main__":
    main()
