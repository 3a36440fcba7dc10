"""The faces the photo detector lets go, and a second acceptance rule for them chosen on some training faces and
scored on others.

    python experiments/faces_in_the_field/weak_faces.py collect --seeds 7,11 --n 400 --out logs/weak/fit.npz
    python experiments/faces_in_the_field/weak_faces.py collect --seeds 13,17 --n 400 --out logs/weak/held.npz
    python experiments/faces_in_the_field/weak_faces.py rules --fit logs/weak/fit.npz --held logs/weak/held.npz

``collect`` runs the shipped photo detector's steps one by one on training faces in scenes of both background
families and records every detection it weighs, with what could tell a face from a texture: its whole-frame score,
the face check's P(face) on its aligned crop, and — for the weak detections the detector looks at closer (the
first :data:`LOOKS`, where it looks at three) — the closer look's best score down to 0.1 (the detector keeps only
0.8 and up), P(face) on that box's crop, and which true face each box is (``scenes.match``, as ``bench.py`` counts).
``rules`` scores the base rule (the photo detector until 2026-12-05: no second rule) and a grid of second rules (a
weak detection also kept when its closer look or its own box scores a lower level *and* the face check is surer of
it) on the ``--fit`` table, picks the rule that finds the most faces while each family's frames with a false box stay
at most the base rule's plus ``--slack``, and reports the base and the picked rule on the ``--held`` table. The
picked rule ships as the photo detector's ``sure_*`` settings (``emotion.serve.faces.SURE_CHECK``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidates import which  # noqa: E402
from scenes import BACKGROUNDS, scenes  # noqa: E402

from emotion.atomic import atomic_open  # noqa: E402
from emotion.serve.face_check import FaceCheck  # noqa: E402
from emotion.serve.faces import (  # noqa: E402
    CHECK_SCORE,
    CLOSER_SCORE,
    CLOSER_SIZE,
    CLOSER_TURNS,
    SCORE_THRESHOLD,
    aligned_crop,
    photo_detector,
    to_look_at,
)

FLOOR = 0.1  # the weakest detection recorded, whole frame and closer look (the detector's own recheck_from)
LOOKS = 6  # weak detections per frame looked at closer (the detector: 3)
#: one row per detection: frame, whole-frame score, side px, the true face its box is (-1: none), P(face) of its
#: crop, its rank among the frame's weak detections looked at (-1: strong or not looked at), the closer look's best
#: score (0: nothing from 0.1), the true face that box is, P(face) of that box's crop
COLUMNS = ("frame", "score", "side", "face", "check", "rank", "look", "look_face", "look_check")


def collect(
    images: np.ndarray, labels: np.ndarray, seeds: list[int], n: int, families: tuple[str, ...] = BACKGROUNDS
) -> tuple[np.ndarray, np.ndarray]:
    # the photo detector's searches, unthresholded: whole frame and closer looks down to FLOOR, no closer looks,
    # check or sure faces inside (the rules decide those from the table)
    det = replace(photo_detector(), score_threshold=FLOOR, recheck=0, check=0.0)
    check = FaceCheck()

    def p_face(frame: np.ndarray, row: np.ndarray) -> float:
        return float(check(aligned_crop(frame, row[4:14].reshape(5, 2), check.size)[None])[0])

    out, frames = [], []
    for family_id, family in enumerate(BACKGROUNDS):
        if family not in families:
            continue
        for seed in seeds:
            for scene in scenes(images, labels, seed=seed, n=n, backgrounds=family):
                frame_id = len(frames)
                frames.append((frame_id, family_id, len(scene.faces)))
                rows = det.rows(scene.frame)  # best first (640-px frames: no rescaling)
                weak = to_look_at(rows, SCORE_THRESHOLD, CLOSER_SIZE)  # what the detector looks at closer
                rank = np.cumsum(weak) - 1
                for k, row in enumerate(rows):
                    record = [frame_id, row[14], max(row[2], row[3]), which(scene.faces, row), p_face(scene.frame, row)]
                    if weak[k] and rank[k] < LOOKS:
                        found = np.concatenate(
                            [det._window_rows(scene.frame, row[:4], a, CLOSER_SIZE, 0.5) for a in CLOSER_TURNS]
                        )
                        best = found[np.argmax(found[:, 14])] if len(found) else None
                        record.append(rank[k])
                        record += (
                            [0.0, -1, 0.0]
                            if best is None
                            else [best[14], which(scene.faces, best), p_face(scene.frame, best)]
                        )
                    else:
                        record += [-1, 0.0, -1, 0.0]
                    out.append(record)
            print(f"{family} seed {seed}: {len(frames)} frames, {len(out)} detections", flush=True)
    return np.array(out, np.float64), np.array(frames, np.int64)


def kept(t: np.ndarray, rule: dict) -> tuple[np.ndarray, np.ndarray]:
    """Which rows a rule keeps, and the true face each kept box is (-1 a false box). The base rule: a strong
    detection passing the check keeps its box; one of the first ``looks`` weak ones keeps its closer look's box if
    that scores ``CLOSER_SCORE`` and passes the check. A second rule also keeps a weak one's closer-look box scoring
    ``look2`` with P(face) ``check2``, or its own box scoring ``own2`` with P(face) ``own_check``."""
    c = {name: t[:, i] for i, name in enumerate(COLUMNS)}
    strong = (c["score"] >= SCORE_THRESHOLD) & (c["check"] >= CHECK_SCORE)
    looked = (c["rank"] >= 0) & (c["rank"] < rule.get("looks", 3))
    by_look = looked & (c["look"] >= CLOSER_SCORE) & (c["look_check"] >= CHECK_SCORE)
    if "look2" in rule:
        by_look |= looked & (c["look"] >= rule["look2"]) & (c["look_check"] >= rule["check2"])
    by_own = np.zeros(len(t), bool)
    if "own2" in rule:
        by_own = (
            ~by_look & (c["score"] < SCORE_THRESHOLD) & (c["score"] >= rule["own2"]) & (c["check"] >= rule["own_check"])
        )
    face = np.where(strong | by_own, c["face"], np.where(by_look, c["look_face"], -2))
    return strong | by_look | by_own, face


def rates(t: np.ndarray, frames: np.ndarray, rule: dict) -> dict:
    """Per family: faces found (fraction), frames with a false box (fraction and count)."""
    keep, face = kept(t, rule)
    out = {}
    for family_id, family in enumerate(BACKGROUNDS):
        ids, faces = frames[frames[:, 1] == family_id, 0], frames[frames[:, 1] == family_id, 2].sum()
        if len(ids) == 0:  # a table of the other family only
            continue
        here = np.isin(t[:, 0], ids) & keep
        found = len({(f, i) for f, i in zip(t[here, 0], face[here]) if i >= 0})
        false = len(np.unique(t[here & (face == -1), 0]))
        out[family] = {"found": found / faces, "false": false / len(ids), "false_frames": false}
    return out


def grid() -> list[dict]:
    rules: list[dict] = [{"looks": n} for n in (3, 4, 6)]
    for looks, look2, check2 in itertools.product((3, 6), (0.5, 0.6, 0.7, 0.75), (0.8, 0.9, 0.95, 0.98, 0.99)):
        rules.append({"looks": looks, "look2": look2, "check2": check2})
    for own2, own_check in itertools.product((0.3, 0.45, 0.6), (0.9, 0.95, 0.98, 0.99, 0.995)):
        rules.append({"own2": own2, "own_check": own_check})
    for looks, look2, check2, own2, own_check in itertools.product(
        (3, 6), (0.6, 0.7, 0.75), (0.98, 0.99), (0.3, 0.45), (0.99, 0.995)
    ):
        rules.append({"looks": looks, "look2": look2, "check2": check2, "own2": own2, "own_check": own_check})
    return rules


def line(name: str, r: dict) -> str:
    cells = (
        f"{r[f]['found']:.3f} / {r[f]['false']:.3f} ({r[f]['false_frames']})" if f in r else "—" for f in BACKGROUNDS
    )
    return f"| {name} | " + " | ".join(cells) + " |"


def choose(
    fit: tuple[np.ndarray, np.ndarray], held: tuple[np.ndarray, np.ndarray] | None, slack: float, also: dict
) -> dict:
    base = rates(*fit, {})
    print("fit table: rule | " + " | ".join(f"{f}: found / false-box frames" for f in BACKGROUNDS) + " |")
    print("|---|" + "---|" * len(BACKGROUNDS))
    print(line("base", base))
    best, best_found = {}, sum(base[f]["found"] for f in base)
    for rule in grid():
        r = rates(*fit, rule)
        ok = all(r[f]["false"] <= base[f]["false"] + slack for f in base)
        print(line(json.dumps(rule) + ("" if ok else " (too many false boxes)"), r))
        total = sum(r[f]["found"] for f in base)
        if ok and total > best_found + 1e-9:
            best, best_found = rule, total
    print(f"\npicked on the fit table: {json.dumps(best) or 'the base rule'}")
    out = {"picked": best, "fit": {"base": base, "picked": rates(*fit, best)}}
    if also:
        out["also"] = also
        out["fit"]["also"] = rates(*fit, also)
        print(line(f"also {json.dumps(also)}", out["fit"]["also"]))
    if held is not None:
        out["held"] = {"base": rates(*held, {}), "picked": rates(*held, best)}
        if also:
            out["held"]["also"] = rates(*held, also)
        print("held-out table:")
        print(line("base", out["held"]["base"]))
        print(line(f"picked {json.dumps(best)}", out["held"]["picked"]))
        if also:
            print(line(f"also {json.dumps(also)}", out["held"]["also"]))
    return out


def load(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The tables of ``paths`` as one (frame ids renumbered after each other)."""
    tables, frames, offset = [], [], 0
    for path in paths:
        with np.load(path) as saved:
            t, f = saved["table"].copy(), saved["frames"].copy()
        t[:, 0] += offset
        f[:, 0] += offset
        offset += len(f)
        tables.append(t)
        frames.append(f)
    return np.concatenate(tables), np.concatenate(frames)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    c.add_argument("--seeds", default="7,11")
    c.add_argument("--n", type=int, default=400)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--families", default=",".join(BACKGROUNDS), help="background families, comma-separated")
    r = sub.add_parser("rules")
    r.add_argument("--fit", type=Path, nargs="+", required=True)
    r.add_argument("--held", type=Path, nargs="+")
    r.add_argument("--slack", type=float, default=0.002, help="false-box frames allowed over the base rule's")
    r.add_argument("--out", type=Path)
    r.add_argument(
        "--also",
        type=json.loads,
        default={},
        help='a rule to report on both tables too, e.g. \'{"own2": 0.3, "own_check": 0.99}\'',
    )
    a = p.parse_args()
    if a.command == "rules":
        result = choose(load(a.fit), load(a.held) if a.held else None, a.slack, a.also)
        if a.out:
            a.out.write_text(json.dumps(result, indent=1))
        return
    from emotion.data.datamodule import FER2013DataModule

    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays("train")
    table, frames = collect(images, labels, [int(s) for s in a.seeds.split(",")], a.n, tuple(a.families.split(",")))
    with atomic_open(a.out) as f:  # under exactly its name (np.savez would add .npz), whole or not at all
        np.savez_compressed(f, table=table, frames=frames)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
