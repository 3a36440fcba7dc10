"""How far the detector's aligned crop lands from the face's true framing, per size and tilt.

    python experiments/faces_in_the_field/residuals.py [--data DIR] [--split train] [--n 600] [--seed 11]

For each face the default detector finds in a scene, the crop's transform (``alignment`` of its detected landmarks)
composed with the face's placement maps the face's own 48x48 pixels into the crop; a perfect alignment is the
identity. Prints that residual's rotation (degrees, positive = clockwise on screen: the opposite of OpenCV's
angles, in which the scenes' tilt is given), scale (crop px per face px) and
shift of the face's centre (crop px), as mean ± standard deviation per size and tilt: a mean far from zero is a
bias that geometry can remove, the spread is what training with jitter would have to absorb. Settings are chosen
on training faces (``--split train``); PublicTest faces only report.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import match, scenes  # noqa: E402

from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.serve.faces import alignment, photo_detector  # noqa: E402


def residual(landmarks: np.ndarray, placement: np.ndarray) -> tuple[float, float, float, float] | None:
    """(rotation °, scale, shift x, shift y) of face pixels → crop pixels; None when the fit fails."""
    crop = alignment(landmarks)
    if crop is None:
        return None
    r = np.vstack([crop, [0, 0, 1]]) @ np.vstack([placement, [0, 0, 1]])
    angle = float(np.degrees(np.arctan2(r[1, 0], r[0, 0])))
    scale = float(np.hypot(r[0, 0], r[1, 0]))
    cx, cy = r[:2] @ np.array([24.0, 24.0, 1.0])
    return angle, scale, float(cx - 24.0), float(cy - 24.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--split", default="train", choices=("train", "val"))
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=11)
    a = p.parse_args()
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays(a.split)
    detector = photo_detector()
    cells: dict[str, list] = defaultdict(list)
    for scene in scenes(images, labels, seed=a.seed, n=a.n, extra=0.0):
        boxes, marks = detector.detect(scene.frame)
        for face in scene.faces:
            i = match(face, boxes)
            if i is None:
                continue
            res = residual(marks[i], face["matrix"])
            if res is not None:
                cells[f"{face['size']}/{face['tilt']:+d}"].append(res)
                cells["all"].append(res)
    print(f"{a.split} faces, seed {a.seed}, n {a.n}: residual of the aligned crop (mean ± sd)\n")
    print("| size/tilt | faces | rotation ° | scale | shift x px | shift y px |")
    print("|---|---|---|---|---|---|")
    for key in sorted(cells, key=lambda k: (k == "all", k)):
        v = np.array(cells[key])
        m, s = v.mean(0), v.std(0)
        row = [key, len(v)] + [f"{m[j]:+.2f} ± {s[j]:.2f}" for j in range(4)]
        print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
