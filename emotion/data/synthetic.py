"""Procedural FER-shaped faces: the embedded default data set, so the pipeline runs with no download.

Each 48×48 grayscale face is drawn at 4× resolution and downscaled. The seven classes differ only in facial
features (mouth curve and openness, brow angle and height, eye openness); pose, scale, lighting, noise, blur and
occluders vary at random, so the task is learnable but not trivial. Images are written in the Kaggle folder layout
with official-style split prefixes, so the real folder reader is what reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from emotion.labels import FER2013_CLASSES

S = 192  # drawing resolution (4 × 48)

# class → (mouth curve, mouth open, brow tilt (+: inner ends down), brow lift, eye open); pixels at 192×192.
_FEATURES = {
    "angry": (-4, 0, 14, -6, 6),
    "disgust": (-10, 4, 6, -2, 5),
    "fear": (-6, 16, -10, 8, 15),
    "happy": (20, 4, 0, 0, 6),
    "sad": (-16, 0, -12, -2, 7),
    "surprise": (0, 28, 0, 14, 16),
    "neutral": (0, 0, 0, 0, 9),
}


def draw_face(label: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    curve, mouth_open, brow_tilt, brow_lift, eye_open = (v + rng.normal(0, 1.5) for v in _FEATURES[label])
    bg = rng.uniform(30, 220)
    img = np.full((S, S), bg, np.float32)
    img += np.linspace(-1, 1, S)[None, :] * rng.uniform(-40, 40)  # lighting gradient
    skin = rng.uniform(110, 230)
    c = (S // 2 + int(rng.normal(0, 4)), S // 2 + int(rng.normal(0, 4)))
    ax = (int(rng.uniform(56, 70)), int(rng.uniform(72, 86)))
    cv2.ellipse(img, c, ax, 0, 0, 360, float(skin), -1, cv2.LINE_AA)
    dark = float(max(0, skin - rng.uniform(80, 120)))

    eye_y, eye_dx = c[1] - 18, 26
    for side in (-1, 1):
        ex = c[0] + side * eye_dx
        cv2.ellipse(img, (ex, eye_y), (11, max(2, int(eye_open))), 0, 0, 360, dark, -1, cv2.LINE_AA)
        brow_y = eye_y - 20 - int(brow_lift)
        inner = (c[0] + side * 8, brow_y + int(brow_tilt))
        outer = (c[0] + side * 40, brow_y - int(brow_tilt * 0.5))
        cv2.line(img, inner, outer, dark, 5, cv2.LINE_AA)

    cv2.line(img, (c[0], c[1] - 4), (c[0] - 4, c[1] + 14), dark, 3, cv2.LINE_AA)  # nose
    mouth_y, half = c[1] + 38, int(rng.uniform(20, 28))
    xs = np.linspace(-half, half, 24)
    top = mouth_y - curve * (xs / half) ** 2 + curve / 2
    if label == "disgust":  # one-sided sneer
        top = top - 6 * (xs / half)
    bottom = top + mouth_open
    pts = np.concatenate([np.stack([c[0] + xs, top], 1), np.stack([c[0] + xs[::-1], bottom[::-1]], 1)])
    cv2.fillPoly(img, [pts.astype(np.int32)], dark, cv2.LINE_AA)
    cv2.polylines(img, [np.stack([c[0] + xs, top], 1).astype(np.int32)], False, dark, 4, cv2.LINE_AA)

    if rng.random() < 0.3:  # occluder: a hand, a bar of glasses, hair
        x0, y0 = rng.integers(0, S - 40, 2)
        cv2.rectangle(
            img,
            (int(x0), int(y0)),
            (int(x0 + rng.integers(20, 60)), int(y0 + rng.integers(15, 40))),
            float(rng.uniform(0, 255)),
            -1,
        )
    angle, scale = rng.normal(0, 10), rng.uniform(0.85, 1.1)
    m = cv2.getRotationMatrix2D((S / 2, S / 2), angle, scale)
    m[:, 2] += rng.normal(0, 6, 2)
    img = cv2.warpAffine(img, m, (S, S), borderMode=cv2.BORDER_REFLECT)
    img = img * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1, 4))
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img += rng.normal(0, rng.uniform(3, 14), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_dataset(root: str | Path, n_train: int = 300, n_val: int = 60, n_test: int = 60, seed: int = 0) -> Path:
    """Write ``n_*`` images per class as ``train/<class>/Training_*.jpg`` and
    ``test/<class>/{Public,Private}Test_*``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    parts = [("train", "Training", n_train), ("test", "PublicTest", n_val), ("test", "PrivateTest", n_test)]
    counter = 0
    tmp = root.with_name(f"{root.name}.partial-{os.getpid()}")  # one per process: several may generate at once
    for folder, prefix, n in parts:
        for label in FER2013_CLASSES:
            d = tmp / folder / label
            d.mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                counter += 1
                cv2.imwrite(
                    str(d / f"{prefix}_{counter:06d}.jpg"), draw_face(label, rng), [cv2.IMWRITE_JPEG_QUALITY, 95]
                )
    (tmp / MARKER).write_text(json.dumps(params(n_train, n_val, n_test, seed)))
    try:
        tmp.rename(root)  # appears complete or not at all
    except OSError:  # another process (a cluster's other machine on a shared disk) finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / MARKER).is_file():
            raise
    return root


MARKER = "synthetic.json"


def params(n_train: int = 300, n_val: int = 60, n_test: int = 60, seed: int = 0) -> dict[str, int]:
    return {"n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed, "version": 1}


def ensure_dataset(root: str | Path, **kwargs: int) -> Path:
    """Generate the set at ``root`` unless one with the same parameters is already there."""
    root = Path(root)
    if root.exists():
        marker = root / MARKER
        if not marker.is_file():
            raise FileExistsError(
                f"{root} exists but holds no synthetic data set ({MARKER} missing); choose another root"
            )
        if json.loads(marker.read_text()) == params(**kwargs):
            return root
        shutil.rmtree(root)  # ours, generated with other parameters
    for stale in root.parent.glob(f"{root.name}.partial-*"):  # left by a killed process
        if not Path(f"/proc/{stale.name.rsplit('-', 1)[1]}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    return write_dataset(root, **kwargs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-val", type=int, default=60)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(write_dataset(a.root, a.n_train, a.n_val, a.n_test, a.seed))


if __name__ == "__main__":
    main()
