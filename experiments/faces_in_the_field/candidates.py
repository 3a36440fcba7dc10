"""Every place YuNet thinks might be a face, with what could tell a face from a texture: a table to choose the
photo detector's acceptance rule offline.

    python experiments/faces_in_the_field/candidates.py --seeds 7,11 --n 400 --out candidates.npz
    python experiments/faces_in_the_field/candidates.py --table candidates.npz   # the rules, from the saved table

Runs the photo detector's whole-frame searches (640 px, upright and ±30°) down to score 0.1 on training faces in
scenes of both background families and records, per detection after merging: its score, size and how well its five
landmarks fit FER2013's landmark template (RMS residual after the best similarity, in 48-px template pixels); and,
for the best :data:`LOOKS` detections scoring under :data:`LOOK_BELOW`, closer looks at it — YuNet's best score in
the window a closer look searches (``YuNetDetector._window_rows``), for each face size :data:`LOOK_SIZES` and turn
:data:`LOOK_ANGLES`. Each detection and each look's best box is a true face or a false box by ``scenes.match``, as
``bench.py`` counts them. ``--table`` scores acceptance rules (a score kept as it is, or a closer look's score over
a set of looks) on the saved table: found rate and frames with a false box per background family.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import BACKGROUNDS, match, scenes  # noqa: E402

from emotion.serve.faces import _MAX_ZOOM, FER_LANDMARKS, photo_detector  # noqa: E402

FLOOR = 0.1  # the weakest whole-frame detection recorded
LOOKS = 8  # detections looked at closer per frame, best first
LOOK_BELOW = 0.9  # detections scoring this or more are not looked at (every rule keeps them)
LOOK_SIZES = (112, 160, 224)  # face width in a closer look's window, px
LOOK_ANGLES = (0.0, -15.0, 15.0, -30.0, 30.0, -45.0, 45.0)
#: a detection's columns, then two per look (size-major): YuNet's best score in it and the true face its box is.
#: ``face``: the index in its frame of the true face the detection's box is (``scenes.match``), -1 for a false box
COLUMNS = ("frame", "score", "side", "fit", "face")


def fit(landmarks: np.ndarray) -> float:
    """RMS distance (48-px template pixels) between five landmarks mapped by their best similarity onto
    :data:`FER_LANDMARKS` and the template; large for landmarks no face has."""
    matrix = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), FER_LANDMARKS, method=cv2.LMEDS)[0]
    if matrix is None:
        return 99.0
    mapped = cv2.transform(landmarks.reshape(-1, 1, 2).astype(np.float32), matrix).reshape(-1, 2)
    return float(np.sqrt(((mapped - FER_LANDMARKS) ** 2).sum(1).mean()))


def which(faces: list[dict], box: np.ndarray) -> int:
    """The index of the true face ``box`` is, or -1."""
    return next((i for i, face in enumerate(faces) if match(face, box[None, :4]) == 0), -1)


def collect(images: np.ndarray, labels: np.ndarray, seeds: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Detections (:data:`COLUMNS` and the looks) and frames (frame id, background family index, number of faces)."""
    det = replace(photo_detector(), score_threshold=FLOOR, recheck=0, check=0.0)  # every candidate, unchecked
    looks = list(itertools.product(LOOK_SIZES, LOOK_ANGLES))
    out, frames = [], []
    for family_id, family in enumerate(BACKGROUNDS):
        for seed in seeds:
            for scene in scenes(images, labels, seed=seed, n=n, backgrounds=family):
                frame_id = len(frames)
                frames.append((frame_id, family_id, len(scene.faces)))
                for k, row in enumerate(det.rows(scene.frame)):
                    record = [frame_id, row[14], max(row[2], row[3]), fit(row[4:14].reshape(5, 2))]
                    record.append(which(scene.faces, row))
                    for size, angle in looks:
                        found = np.zeros((0, 15), np.float32)
                        if k < LOOKS and row[14] < LOOK_BELOW and max(row[2], row[3]) * _MAX_ZOOM >= size:
                            found = det._window_rows(scene.frame, row[:4], angle, size, 0.5)
                        best = found[np.argmax(found[:, 14])] if len(found) else None
                        record += [0.0, -1] if best is None else [float(best[14]), which(scene.faces, best)]
                    out.append(record)
            print(f"{family} seed {seed}: {len(frames)} frames so far, {len(out)} detections", flush=True)
    return np.array(out, np.float64), np.array(frames, np.int64)


def looked(table: np.ndarray, sizes: tuple[int, ...], angles: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The best score over the looks of ``sizes`` × ``angles`` per detection, and the true face its box is."""
    cols = [
        len(COLUMNS) + 2 * (LOOK_SIZES.index(s) * len(LOOK_ANGLES) + LOOK_ANGLES.index(a))
        for s, a in itertools.product(sizes, angles)
    ]
    scores, faces = table[:, cols], table[:, [c + 1 for c in cols]]
    best = np.argmax(scores, 1)
    rows = np.arange(len(table))
    return scores[rows, best], faces[rows, best]


def rates(table: np.ndarray, frames: np.ndarray, by_score: np.ndarray, by_look: np.ndarray, look_face: np.ndarray):
    """Per family: found rate and frames with a false box, keeping the detections ``by_score`` (their own box) and
    ``by_look`` (the box their closer look found, which is the true face ``look_face`` or -1). Two kept boxes of one
    face count once (non-maximum suppression merges them in the detector)."""
    face = np.where(by_score, table[:, 4], np.where(by_look, look_face, -2))
    kept = by_score | by_look
    out = {}
    for family_id, family in enumerate(BACKGROUNDS):
        ids = frames[frames[:, 1] == family_id, 0]
        here = np.isin(table[:, 0], ids) & kept
        found = len({(f, i) for f, i in zip(table[here, 0], face[here]) if i >= 0})
        false_frames = len(np.unique(table[here & (face == -1), 0]))
        out[family] = (found / frames[ids, 2].sum(), false_frames / len(ids))
    return out


#: the closer looks compared: name → (face sizes, turns)
LOOK_SETS = {
    "160 px, 0/±30° (shipped the morning of 2026-12-04)": ((160,), (0.0, -30.0, 30.0)),
    "160 px, 0/±15/±30/±45°": ((160,), LOOK_ANGLES),
    "224 px, 0/±15/±30/±45°": ((224,), LOOK_ANGLES),
    "112 px, 0/±30°": ((112,), (0.0, -30.0, 30.0)),
    "160+224 px, 0/±30/±45°": ((160, 224), (0.0, -30.0, 30.0, -45.0, 45.0)),
    "all sizes and turns": (LOOK_SIZES, LOOK_ANGLES),
}


def report(table: np.ndarray, frames: np.ndarray) -> None:
    score, side, face = table[:, 1], table[:, 2], table[:, 4]
    print(f"{len(frames)} frames, {frames[:, 2].sum()} faces, {len(table)} detections from {FLOOR}")
    shipped = looked(table, *LOOK_SETS["160 px, 0/±30° (shipped the morning of 2026-12-04)"])[0]
    for name, values in (("score", score), ("fit", table[:, 3]), ("closer look", shipped), ("side", side)):
        q = "/".join(f"{v:.2f}" for v in np.percentile(values[face >= 0], (5, 50, 95)))
        r = "/".join(f"{v:.2f}" for v in np.percentile(values[face < 0], (5, 50, 95)))
        print(f"{name:12s} p5/p50/p95 true faces {q} · false boxes {r}")
    families = " | ".join(f"{f}: found | false" for f in BACKGROUNDS)
    print(f"\n| kept as detected | kept by a closer look | {families} |")
    print("|---|---|" + "---|" * 2 * len(BACKGROUNDS))
    for (name, (sizes, angles)), high, accept in itertools.product(
        LOOK_SETS.items(), (0.45, 0.65, 0.75, 0.85), (0.7, 0.75, 0.8, 0.85)
    ):
        closer, closer_face = looked(table, sizes, angles)
        for limit in (99.0, 3.0):
            by_score = (score >= high) & (table[:, 3] <= limit)
            r = rates(table, frames, by_score, ~by_score & (score < high) & (closer >= accept), closer_face)
            fits = "" if limit == 99 else f", landmark fit ≤ {limit}"
            print(
                f"| score ≥ {high}{fits} | ≥ {accept}, {name} | "
                + " | ".join(f"{r[f][0]:.3f} | {r[f][1]:.3f}" for f in BACKGROUNDS)
                + " |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--seeds", default="7,11")
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path, help="score rules on a table saved by an earlier run")
    a = p.parse_args()
    if a.table:
        saved = np.load(a.table)
        report(saved["table"], saved["frames"])
        return
    from emotion.data.datamodule import FER2013DataModule

    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays("train")
    table, frames = collect(images, labels, [int(s) for s in a.seeds.split(",")], a.n)
    if a.out:
        np.savez_compressed(a.out, table=table, frames=frames)
    report(table, frames)


if __name__ == "__main__":
    main()
