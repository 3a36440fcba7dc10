"""Every place YuNet thinks might be a face, with what could tell a face from a texture: a table to choose the
detector's acceptance rule offline.

    python experiments/faces_in_the_field/candidates.py --seeds 7,11 --n 400 --out candidates.npz
    python experiments/faces_in_the_field/candidates.py --table candidates.npz   # the rules, from the saved table

Runs the photo detector's whole-frame searches (640 px, upright and ±30°) at a low score floor on training faces
in scenes of both background families and records, per detection after merging: its score, size, how well its
five landmarks fit FER2013's landmark template (RMS residual after the best similarity, in 48-px template pixels),
and the best score of a closer look at it (the window the shipped detector uses: face 160 px wide, upright and
turned by ±30°) with that look's landmark fit. Each detection is a true face or a false box by ``scenes.match``,
as ``bench.py`` counts them. ``--table`` scores acceptance rules on the saved table: found rate and frames with a
false box per family.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import BACKGROUNDS, match, scenes  # noqa: E402

from emotion.serve.faces import FER_LANDMARKS, photo_detector  # noqa: E402

FLOOR = 0.1  # the weakest whole-frame detection recorded
LOOKS = 8  # closer looks per frame, best detections first
#: a detection's columns; ``face``/``closer_face``: the index in its frame of the true face that its whole-frame box /
#: its closer look's box is (``scenes.match``), -1 for a false box (or no closer look)
COLUMNS = ("frame", "score", "side", "fit", "closer", "closer_fit", "face", "closer_face")


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
    """Detections (rows of :data:`COLUMNS`) and frames (frame id, background family index, number of faces)."""
    base = photo_detector()
    det = replace(base, score_threshold=FLOOR, recheck=0)
    rows_out, frames = [], []
    for family_id, family in enumerate(BACKGROUNDS):
        for seed in seeds:
            for scene in scenes(images, labels, seed=seed, n=n, backgrounds=family):
                frame_id = len(frames)
                frames.append((frame_id, family_id, len(scene.faces)))
                for k, row in enumerate(det.rows(scene.frame)):
                    closer, closer_fit, closer_face = 0.0, 99.0, -1
                    if k < LOOKS and max(row[2], row[3]) * 5 >= base.recheck_size:
                        looks = np.concatenate(
                            [det._window_rows(scene.frame, row[:4], a, base.recheck_size, 0.5) for a in base.rotations]
                        )
                        if len(looks):
                            best = looks[int(np.argmax(looks[:, 14]))]
                            closer, closer_fit = float(best[14]), fit(best[4:14].reshape(5, 2))
                            closer_face = which(scene.faces, best)
                    rows_out.append(
                        (
                            frame_id,
                            row[14],
                            max(row[2], row[3]),
                            fit(row[4:14].reshape(5, 2)),
                            closer,
                            closer_fit,
                            which(scene.faces, row),
                            closer_face,
                        )
                    )
            print(f"{family} seed {seed}: {len(frames)} frames so far, {len(rows_out)} detections", flush=True)
    return np.array(rows_out, np.float64), np.array(frames, np.int64)


def rates(table: np.ndarray, frames: np.ndarray, by_score: np.ndarray, by_look: np.ndarray) -> dict:
    """Per family: found rate and frames with a false box, keeping the detections ``by_score`` (as detected) and
    ``by_look`` (as their closer look found them). Two kept boxes of one face count once (non-maximum suppression
    merges them in the detector)."""
    face = np.where(by_score, table[:, 6], np.where(by_look, table[:, 7], -2))
    kept = by_score | by_look
    out = {}
    for family_id, family in enumerate(BACKGROUNDS):
        ids = frames[frames[:, 1] == family_id, 0]
        here = np.isin(table[:, 0], ids) & kept
        found = len({(f, i) for f, i in zip(table[here, 0], face[here]) if i >= 0})
        false_frames = len(np.unique(table[here & (face == -1), 0]))
        out[family] = (found / frames[ids, 2].sum(), false_frames / len(ids))
    return out


def rules(t: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Acceptance rules to compare: for each, the detections kept as detected and those kept by a closer look."""
    out = {}
    for s in (0.45, 0.65, 0.75, 0.85):
        for c in (0.7, 0.8, 0.85, 0.9):
            out[f"score>={s}, or closer>={c}"] = (t["score"] >= s, (t["score"] < s) & (t["closer"] >= c))
    for s in (0.45, 0.65):
        for c in (0.8, 0.9):
            for f in (2.0, 3.0):
                out[f"score>={s} and fit<={f}, or closer>={c}"] = (
                    (t["score"] >= s) & (t["fit"] <= f),
                    ~((t["score"] >= s) & (t["fit"] <= f)) & (t["closer"] >= c),
                )
    for c in (0.7, 0.8, 0.85, 0.9):
        out[f"closer>={c} only (every detection looked at)"] = (np.zeros(len(t["score"]), bool), t["closer"] >= c)
    return out


def report(table: np.ndarray, frames: np.ndarray) -> None:
    t = {name: table[:, i] for i, name in enumerate(COLUMNS)}
    real, false = t["face"] >= 0, t["face"] < 0
    print(f"{len(frames)} frames, {frames[:, 2].sum()} faces, {len(table)} detections from {FLOOR}")
    for name in ("score", "fit", "closer", "closer_fit"):
        q = [f"{v:.2f}" for v in np.percentile(t[name][real], (5, 50, 95))]
        r = [f"{v:.2f}" for v in np.percentile(t[name][false], (5, 50, 95))]
        print(f"{name:10s} p5/p50/p95 true faces {'/'.join(q)} · false boxes {'/'.join(r)}")
    print("\n| rule | " + " | ".join(f"{f}: found | false-box frames" for f in BACKGROUNDS) + " |")
    print("|---|" + "---|" * 2 * len(BACKGROUNDS))
    for name, (by_score, by_look) in rules(t).items():
        r = rates(table, frames, by_score, by_look)
        print(f"| {name} | " + " | ".join(f"{r[f][0]:.3f} | {r[f][1]:.3f}" for f in BACKGROUNDS) + " |")


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
