"""What aligning onto one template costs on FER2013's own crops, with no scene around them.

    python experiments/faces_in_the_field/own_framing.py [--data DIR] [--split val] [--n 0] [--seed 0]
        [--model default emotion_vgg] [--zoom 1.05 1.1] [--cache marks.npz] [--out own_framing.json]

The benchmark's framing loss (oracle-aligned → accuracy given found) could be the detector's landmarks failing in a
scene, or each FER2013 face's own framing, which an alignment onto one template (:data:`FER_LANDMARKS`) cannot
reproduce. This takes the scenes away: each 48x48 face is upscaled ×4 (cubic, as ``scenes.py`` places faces) onto a
canvas padded by edge replication, the shipped photo detector runs on it, and each of these crops is classified:

- ``original``: the 48x48 crop itself (the crop accuracy);
- ``own framing``: cut back out of the canvas by :func:`aligned_crop` with the template carried through the ×4
  placement, i.e. the original framing after the same resampling (a control: it should match ``original``);
- ``template``: cut by :func:`aligned_crop` with the detected landmarks, as the pipeline cuts every face;
- ``template, not turned`` / ``not rescaled`` / ``not shifted``: the template crop with one part of its residual
  against the own framing (below) taken back — diagnostics that use the true framing, not crops a pipeline could
  make: what each part of the alignment costs;
- ``template zoomed ×z`` (``--zoom``): the template crop scaled by z about its centre (z > 1: closer), a crop the
  pipeline could make — choose z on training faces (``--split train``).

The detections (the slow part, ~0.15 s per face) can be cached with ``--cache`` and reused for other zooms/models.

Also prints the template crop's residual against the face's own pixels (rotation, scale, shift, as
``residuals.py``): its spread here is FER2013's own framing plus the landmarks' error on clean faces.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import detections_key  # noqa: E402
from residuals import residual as scene_residual  # noqa: E402

from emotion.atomic import atomic_open  # noqa: E402
from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.evaluation.paired import paired_comparison  # noqa: E402
from emotion.serve.faces import FER_LANDMARKS, aligned_crop, photo_detector  # noqa: E402
from emotion.serve.predictor import Predictor  # noqa: E402

UP, PAD = 4, 96  # the face at 192 px in a 384x384 canvas


def canvas(face: np.ndarray) -> np.ndarray:
    big = cv2.resize(face, (48 * UP, 48 * UP), interpolation=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)


PLACEMENT = np.array([[UP, 0, PAD], [0, UP, PAD], [0, 0, 1]], np.float64)  # face pixels → canvas pixels


def residual(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(rotation °, scale, shift x, shift y) of face pixels → template crop pixels (``residuals.residual`` of the
    canvas placement); the identity is (0, 1, 0, 0)."""
    res = scene_residual(landmarks, PLACEMENT[:2])
    if res is None:  # only for degenerate landmarks, which the detector does not give
        raise ValueError(f"landmarks {landmarks.tolist()} give no alignment")
    return res


def landmarks_for(angle: float, scale: float, dx: float, dy: float) -> np.ndarray:
    """Canvas landmarks whose template crop has this residual: R = T(centre + shift) · scale · turn · T(-centre)."""
    c, s = np.cos(np.radians(angle)) * scale, np.sin(np.radians(angle)) * scale
    r = np.array([[c, -s, 24 + dx - 24 * c + 24 * s], [s, c, 24 + dy - 24 * s - 24 * c], [0, 0, 1]])
    crop = r @ np.linalg.inv(PLACEMENT)  # canvas → crop
    template = np.column_stack([FER_LANDMARKS, np.ones(5)])
    return (np.linalg.inv(crop) @ template.T).T[:, :2]


def detect(images: np.ndarray, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the faces found on their canvas, their landmarks in canvas pixels), cached in ``cache`` with a
    digest of the faces, the detector's settings and the shipped weights (``bench.detections_key``), so a cache made
    for other faces (another --split, --n or --seed) or by another detector is refused, not reused."""
    detector = photo_detector()
    digest = detections_key(detector, [images])
    if cache and cache.exists():
        with np.load(cache) as z:
            if "faces" not in z or str(z["faces"]) != digest:
                raise SystemExit(
                    f"{cache} holds the detections of other faces or another detector: "
                    "delete it or give another --cache"
                )
            return z["found"], z["marks"]
    found, landmarks = [], []
    for i, face in enumerate(images):
        boxes, marks = detector.detect(canvas(face))
        if len(boxes) == 0:
            continue
        off = np.hypot(*(boxes[:, :2] + boxes[:, 2:] / 2 - (PAD + 24 * UP)).T)
        j = int(np.argmin(off))
        if off[j] <= 0.35 * 48 * UP:  # the bench's rule for a found face
            found.append(i)
            landmarks.append(marks[j])
    found_a, marks_a = np.array(found, int), np.array(landmarks, np.float64).reshape(-1, 5, 2)
    if cache:
        with atomic_open(cache) as f:  # under exactly its name (np.savez would add .npz), whole or not at all
            np.savez(f, found=found_a, marks=marks_a, faces=digest)
    return found_a, marks_a


def variants(face: np.ndarray, marks: np.ndarray, zooms: list[float]) -> dict[str, np.ndarray]:
    """The crops of one face (above): the own framing, the template crop, its diagnostics and its zoomed versions."""
    frame = canvas(face)
    angle, scale, dx, dy = residual(marks)
    out = {"own framing": aligned_crop(frame, FER_LANDMARKS * UP + PAD), "template": aligned_crop(frame, marks)}
    out["not turned"] = aligned_crop(frame, landmarks_for(0.0, scale, dx, dy))
    out["not rescaled"] = aligned_crop(frame, landmarks_for(angle, 1.0, dx, dy))
    out["not shifted"] = aligned_crop(frame, landmarks_for(angle, scale, 0.0, 0.0))
    for z in zooms:  # the template scaled by z about the crop's centre: a crop any pipeline could make
        out[f"template zoomed ×{z:g}"] = aligned_crop(frame, landmarks_for(angle, scale * z, dx * z, dy * z))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--split", default="val", choices=("train", "val"), help="val = PublicTest")
    p.add_argument("--n", type=int, default=0, help="N faces drawn with --seed (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", nargs="+", default=["default", "emotion_vgg"])
    p.add_argument("--zoom", type=float, nargs="*", default=[], help="template zooms to try (>1: closer)")
    p.add_argument("--cache", type=Path, help="an .npz of the detections, written once, then reused")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays(a.split)
    if a.n:
        pick = np.sort(np.random.default_rng(a.seed).permutation(len(images))[: a.n])
        images, labels = images[pick], labels[pick]
    idx, marks = detect(images, a.cache)
    per_face = [variants(images[i], m, a.zoom) for i, m in zip(idx, marks)]
    crops = {name: np.stack([v[name] for v in per_face]) for name in per_face[0]}
    y = torch.as_tensor(labels[idx])
    res = np.array([residual(m) for m in marks])
    m, s = res.mean(0), res.std(0)
    report: dict = {
        "split": a.split,
        "seed": a.seed if a.n else None,
        "faces": len(images),
        "found": len(idx),
        "residual_mean": m.tolist(),
        "residual_sd": s.tolist(),
        "models": {},
    }
    print(f"{a.split}: {len(idx)} of {len(images)} faces found on their ×{UP} canvas")
    print(
        "template crop vs the face's own pixels (mean ± sd): rotation {:+.2f} ± {:.2f}°, scale {:.3f} ± {:.3f}, "
        "shift x {:+.2f} ± {:.2f} px, shift y {:+.2f} ± {:.2f} px".format(*np.ravel(np.column_stack([m, s])))
    )
    for model in a.model:
        pred = Predictor.from_pretrained(model, detector=None)
        right = {"original": torch.as_tensor(pred.classify(images[idx]).argmax(1)) == y} | {
            name: torch.as_tensor(pred.classify(c).argmax(1)) == y for name, c in crops.items()
        }
        report["models"][model] = {}
        print(
            f"\n## {model}\n\n| crop | accuracy | right only here / only in the original, p | the same against the "
            "template |\n|---|---|---|---|"
        )
        for name, r in right.items():
            cmp, vs_template = paired_comparison(r, right["original"]), paired_comparison(r, right["template"])
            report["models"][model][name] = cmp | {"against_template": vs_template}
            cells = [
                "" if other == name else f"{c['only_this_right']} / {c['only_other_right']}, p = {c['mcnemar_p']:.3f}"
                for other, c in (("original", cmp), ("template", vs_template))
            ]
            print(f"| {name} | {cmp['accuracy']:.4f} | {cells[0]} | {cells[1]} |")
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
