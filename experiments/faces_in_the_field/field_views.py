"""Every training face as the serving pipeline frames it: placed into a scene, found by the default detector and
cut by its aligned crop — the views ``data.views`` trains on (``experiment=field``).

    python experiments/faces_in_the_field/field_views.py [--data DIR] [--out logs/field_views.npz] [--seed 0]
        [--backgrounds procedural,photos]

Each training face (never PublicTest) goes into its own 640x480 scene (``scenes.py``'s background of one of
``--backgrounds``, drawn per face, feathering, brightness and noise) at a size drawn log-uniformly from 64-240 px and
a tilt uniform in ±40° — continuous ranges, wider than the benchmark's cells — then through ``photo_detector`` and
``aligned_crop`` at ``CROP_ZOOM``, exactly as ``Predictor.predict`` frames a face (the views of the shipped
``emotion_vgg_field`` were cut before the zoom, at 1.0). The file holds, per face the detector found, its
source path (the key ``data.views`` matches training faces by), its 48x48 view and its background family; faces it
missed are counted and keep their original.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import BACKGROUNDS, background, match, noisy, place  # noqa: E402

from emotion.atomic import atomic_open  # noqa: E402
from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.serve.faces import CROP_ZOOM, aligned_crop, photo_detector  # noqa: E402


def views(job: tuple[np.ndarray, np.ndarray, int, tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(found mask, views, background family index) of a chunk of faces; each face's scene drawn from its own seed
    (one family: the same scenes as before families could be mixed)."""
    images, ids, seed, families = job
    detector = photo_detector()
    found = np.zeros(len(images), bool)
    family = np.zeros(len(images), np.int8)
    out = np.zeros_like(images)
    for k, (face, i) in enumerate(zip(images, ids)):
        rng = np.random.default_rng([seed, int(i)])
        if len(families) > 1:
            family[k] = rng.integers(len(families))
        size = int(round(np.exp(rng.uniform(np.log(64), np.log(240)))))
        frame = background(rng, families[family[k]])
        truth = place(rng, frame, face, size, float(rng.uniform(-40, 40)), [])
        frame = noisy(rng, frame)
        boxes, marks = detector.detect(frame)
        j = match(truth, boxes)
        if j is not None:
            found[k], out[k] = True, aligned_crop(frame, marks[j], zoom=CROP_ZOOM)
    return found, out, family


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--out", type=Path, default=Path("logs/field_views.npz"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--limit", type=int, help="only the first N training faces (a trial)")
    p.add_argument(
        "--backgrounds",
        default="procedural",
        help=f"comma-separated families, one drawn per face ({', '.join(BACKGROUNDS)}; default procedural)",
    )
    a = p.parse_args()
    families = tuple(a.backgrounds.split(","))
    if unknown := sorted(set(families) - set(BACKGROUNDS)):
        p.error(f"--backgrounds {a.backgrounds}: unknown {', '.join(unknown)}; use {', '.join(BACKGROUNDS)}")
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    idx = dm.splits.train[: a.limit]
    images, sources = dm.raw.images[idx], dm.raw.sources[idx]
    t0 = time.perf_counter()
    chunks = np.array_split(np.arange(len(idx)), max(1, 8 * a.workers))
    parts = []
    with Pool(a.workers) as pool:  # in order, so the views line up with ``sources``; a line per chunk on stderr
        for part in pool.imap(views, [(images[c], idx[c], a.seed, families) for c in chunks]):
            parts.append(part)
            done = sum(len(f) for f, _, _ in parts)
            print(f"{done}/{len(idx)} faces, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    found = np.concatenate([f for f, _, _ in parts])
    out = np.concatenate([v for _, v, _ in parts])
    family = np.concatenate([b for _, _, b in parts])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(a.out) as f:
        np.savez_compressed(f, sources=sources[found], images=out[found], backgrounds=np.array(families)[family[found]])
    per = "; ".join(f"{f} {found[family == k].mean():.3f} of {(family == k).sum()}" for k, f in enumerate(families))
    print(
        f"{found.sum()} of {len(idx)} training faces found and framed ({found.mean():.3f}; {per}); "
        f"{time.perf_counter() - t0:.0f} s with {a.workers} workers -> {a.out}"
    )


if __name__ == "__main__":
    main()
