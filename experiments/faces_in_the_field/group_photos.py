"""Small faces in large photos: a phone's group photo (4032×3024) with a dozen faces 48–256 px wide, through the
product's path (``Predictor.predict``, the photo detector), for several smallest-face settings.

    cd experiments/faces_in_the_field
    python group_photos.py --split train --findable 28,32,36,44 --out ../../logs/group/train.json
    python group_photos.py --split test --out results-group.json

The photo detector searches a copy 640 px wide; in a 4032-px photo a 120-px face is 19 px there, under what YuNet
finds. With ``min_face`` set, a second search, upright only, runs on a copy where a ``min_face`` face is
``FINDABLE_PX`` wide (``emotion.serve.faces``). ``--split train`` chooses ``FINDABLE_PX`` (``--findable``: the
values tried, each at every ``--min-face``); ``--split test`` reports the shipped setting on PublicTest faces.
``--judged 48,none`` compares the finer search with and without ``FINE_JUDGED_PX`` (its weak faces that the 640-px
copy shows large enough to judge are dropped).

A photo: a background of ``scenes.py`` (the procedural family and scikit-image's photographs, alternating) scaled to
the photo's size, with the camera's noise; ``--faces`` faces from the split, each size of :data:`SIZES` twice, tilted
by 0° or ±15°, at random places apart from each other. Counted as in ``bench.py``: found (``scenes.match``),
photos with a false box, end-to-end accuracy, ms per photo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import pipeline  # noqa: E402  (the product's path, Predictor.predict, as the benchmark runs it)
from scenes import Scene, background, noisy, paste, placement, score  # noqa: E402

import emotion.serve.faces as faces_module  # noqa: E402
from emotion.serve.faces import photo_detector  # noqa: E402
from emotion.serve.predictor import Predictor  # noqa: E402

SIZES = (48, 64, 96, 128, 192, 256)
TILTS = (0, -15, 15)


def group_photos(
    images: np.ndarray, labels: np.ndarray, n: int, width: int, height: int, per_photo: int, seed: int
) -> list[Scene]:
    rng = np.random.default_rng(seed)
    photos = []
    for k in range(n):
        family = ("procedural", "photos")[k % 2]
        # bilinear, as the recorded runs did (cv2.INTER_CUBIC was passed positionally, where OpenCV takes it as dst)
        frame = cv2.resize(background(rng, family), (width, height), interpolation=cv2.INTER_LINEAR)
        faces: list[dict] = []
        for j in range(per_photo):
            size, tilt = SIZES[j % len(SIZES)], TILTS[int(rng.integers(len(TILTS)))]
            for _ in range(200):  # apart from the other faces
                cx, cy = rng.uniform(size, width - size), rng.uniform(size, height - size)
                if all(np.hypot(cx - f["centre"][0], cy - f["centre"][1]) > size + f["size"] for f in faces):
                    break
            index = int(rng.integers(len(images)))
            matrix = placement(size, tilt, cx, cy)
            paste(frame, images[index], matrix, float(rng.uniform(0.8, 1.2)))
            faces.append({"index": index, "label": int(labels[index]), "size": size, "tilt": tilt, "centre": (cx, cy)})
        photos.append(Scene(noisy(rng, frame), faces))
    return photos


def summary(rows: dict) -> dict:
    """Found rate per face size (all tilts), from ``scenes.score``'s cells."""
    by_size = {}
    for size in SIZES:
        cells = [c for key, c in rows.items() if key.split("/")[0] == str(size)]
        faces = sum(c["faces"] for c in cells)
        by_size[size] = round(sum(c["found"] * c["faces"] for c in cells) / faces, 3) if faces else None
    return by_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--model", default="default")
    p.add_argument("--n", type=int, default=24, help="photos")
    p.add_argument("--faces", type=int, default=12, help="per photo")
    p.add_argument("--size", default="4032x3024")
    p.add_argument("--min-face", default="0,24,32,48,64", help="the detector's min_face settings to compare")
    p.add_argument("--findable", help="FINDABLE_PX values to try (default: the shipped one)")
    p.add_argument("--judged", help="FINE_JUDGED_PX values to try, 'none' for no such rule (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    from emotion.data.datamodule import FER2013DataModule

    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays(a.split)
    width, height = (int(v) for v in a.size.split("x"))
    photos = group_photos(images, labels, a.n, width, height, a.faces, a.seed)
    crop_probs = Predictor.from_pretrained(a.model, detector=None).classify(images)
    findable = [int(v) for v in a.findable.split(",")] if a.findable else [faces_module.FINDABLE_PX]
    judged = [faces_module.FINE_JUDGED_PX]
    if a.judged:
        judged = [None if v == "none" else int(v) for v in a.judged.split(",")]
    results = {}
    for px, judged_px in ((px, j) for px in findable for j in judged):
        faces_module.FINDABLE_PX, faces_module.FINE_JUDGED_PX = px, judged_px
        for min_face in (int(v) for v in a.min_face.split(",")):
            if min_face == 0 and (px, judged_px) != (findable[0], judged[0]):
                continue  # no second search: FINDABLE_PX and FINE_JUDGED_PX move nothing
            detector = replace(photo_detector(), min_face=min_face)
            r = score(pipeline("yunet-aligned", a.model, detector=detector), photos, crop_probs)
            name = f"min_face={min_face}" + (f" findable={px}" if a.findable else "")
            name += f" judged={judged_px}" if a.judged else ""
            overall = r["cells"]["all/all"]
            results[name] = {
                "found": round(overall["found"], 3),
                "accuracy": round(overall["accuracy"], 3),
                "crop_accuracy": round(overall["crop_accuracy"], 3),
                "false_box_photos": round(r["false_box_frames"], 3),
                "ms_per_photo": round(r["ms_per_frame"]),
                "found_by_size": summary(r["cells"]),
            }
            print(name, json.dumps(results[name]), flush=True)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"split": a.split, "photos": a.n, "size": a.size, "results": results}, indent=1))


if __name__ == "__main__":
    main()
