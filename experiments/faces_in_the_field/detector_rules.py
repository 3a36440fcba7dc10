"""Which of YuNet's weaker detections to keep: a study of acceptance rules on faces inside scenes.

    python experiments/faces_in_the_field/detector_rules.py [--split train] [--seed 7] [--n 1500]
        [--rotations 0,-30,30,-15,15] [--floor 0.2] [--out rules.json]

Runs YuNet once per scene and turned search at a low score ``--floor``, keeps every raw detection with the search
that made it, groups the detections of one place across searches (IoU > 0.3) and then scores acceptance rules
offline on the same detections: a score threshold alone (the shipped rule: 0.45 over 0°/±30°), and a lower score
accepted only where two or more turned searches agree on the face. Reports found rate and frames with a false box
(``scenes.match``, as ``bench.py`` counts them) per rule. Choose on training faces (``--split train``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import match, scenes  # noqa: E402

from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.serve.faces import YuNetDetector, iou  # noqa: E402


def raw(detector: YuNetDetector, frame: np.ndarray, angles: list[float]) -> list[tuple[np.ndarray, float, int]]:
    """Every detection above the detector's threshold as (box, score, index of the search that found it)."""
    out = []
    for k, angle in enumerate(angles):
        for row in detector.rows(frame, (angle,)):
            out.append((row[:4], float(row[14]), k))
    return out


def groups(found: list[tuple[np.ndarray, float, int]]) -> list[dict]:
    """Detections of one place, strongest first: its box, best score per search."""
    out: list[dict] = []
    for box, score, k in sorted(found, key=lambda f: -f[1]):
        for g in out:
            if iou(g["box"], box) > 0.3:
                g["scores"][k] = max(g["scores"].get(k, 0.0), score)
                break
        else:
            out.append({"box": box, "scores": {k: score}})
    return out


def evaluate(all_groups: list[list[dict]], truths: list[list[dict]], accept) -> dict:
    faces = found = false = 0
    for gs, faces_here in zip(all_groups, truths):
        kept = [g for g in gs if accept(g["scores"])]
        boxes = np.array([g["box"] for g in kept]).reshape(-1, 4)
        used = set()
        for face in faces_here:
            faces += 1
            i = match(face, boxes)
            if i is not None:
                found += 1
                used.add(i)
        false += int(len(kept) > len(used))
    return {"found": found / faces, "false_box_frames": false / len(truths)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--split", default="train", choices=("train", "val"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--rotations", default="0,-30,30,-15,15")
    p.add_argument("--floor", type=float, default=0.2)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays(a.split)
    angles = [float(r) for r in a.rotations.split(",")]
    detector = YuNetDetector(score_threshold=a.floor, detect_width=0)
    all_groups, truths = [], []
    for scene in scenes(images, labels, seed=a.seed, n=a.n):
        all_groups.append(groups(raw(detector, scene.frame, angles)))
        truths.append(scene.faces)
    shipped = [angles.index(r) for r in (0.0, -30.0, 30.0)]
    rules = {}
    for t in (0.35, 0.4, 0.45, 0.5):
        rules[f"score>={t} on 0,±30"] = lambda s, t=t: max(s.get(k, 0) for k in shipped) >= t
        rules[f"score>={t} on all"] = lambda s, t=t: max(s.values()) >= t
    for low in (a.floor, 0.25, 0.3, 0.35):
        for hits in (2, 3):
            rules[f"0.45, or >={low} in >={hits} of 0,±30"] = lambda s, low=low, hits=hits: (
                max(s.get(k, 0) for k in shipped) >= 0.45 or sum(s.get(k, 0) >= low for k in shipped) >= hits
            )
            rules[f"0.45 on 0,±30, or >={low} in >={hits} of all"] = lambda s, low=low, hits=hits: (
                max(s.get(k, 0) for k in shipped) >= 0.45 or sum(v >= low for v in s.values()) >= hits
            )
    results = {name: evaluate(all_groups, truths, rule) for name, rule in rules.items()}
    print(f"{len(truths)} frames, {a.split} faces, seed {a.seed}, searches {angles}, floor {a.floor}\n")
    print("| rule | found | frames with a false box |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['found']:.3f} | {r['false_box_frames']:.3f} |")
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
