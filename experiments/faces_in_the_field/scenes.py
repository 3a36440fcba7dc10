"""FER2013 faces placed into 640x480 scenes, as a user's photos and webcam frames show them, and the scoring of a
detector + crop + model pipeline on them.

A scene: a background without faces — ``procedural`` (smoothed noise at three scales, a colour gradient, a few random
shapes; the family the field model's training views also use) or ``photos`` (a random part of one of scikit-image's
bundled photographs without people: textures, objects, a cat, text, astronomy, microscopy; a family no training
view has seen) — one face (sometimes two, sometimes none) scaled to ``size`` pixels, tilted by ``tilt`` degrees,
at a random place, with feathered edges, a brightness change and mild noise. The placement is an affine map from the
face's 48x48 pixels into the frame, kept with the frame: it gives the true box and maps detected landmarks back onto
the face.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

W, H = 640, 480
SIZES = (80, 120, 200)
TILTS = (0, -20, 20, -35, 35)
BACKGROUNDS = ("procedural", "photos")
#: scikit-image's bundled photographs (in its wheel, no download) without a human face in them
PHOTOS = (
    "brick",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)


def background(rng: np.random.Generator, family: str = "procedural") -> np.ndarray:
    """A 640x480 BGR background of ``family`` (:data:`BACKGROUNDS`)."""
    if family == "photos":
        return photo_background(rng)
    if family != "procedural":
        raise ValueError(f"unknown background family {family!r}; use one of {', '.join(BACKGROUNDS)}")
    img = np.zeros((H, W, 3), np.float32)
    for cell in (8, 32, 128):
        noise = rng.normal(0, 1, (H // cell + 2, W // cell + 2, 3)).astype(np.float32)
        img += cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC) * rng.uniform(10, 30)
    gx, gy = np.meshgrid(np.linspace(-1, 1, W), np.linspace(-1, 1, H))
    img += (gx[..., None] * rng.uniform(-40, 40, 3) + gy[..., None] * rng.uniform(-40, 40, 3)).astype(np.float32)
    img += rng.uniform(60, 190, 3).astype(np.float32)
    for _ in range(rng.integers(2, 7)):
        colour = [float(c) for c in rng.uniform(0, 255, 3)]
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 200)), y + int(rng.integers(20, 200))), colour, -1)
        else:
            axes = (int(rng.integers(10, 90)), int(rng.integers(10, 90)))
            cv2.ellipse(img, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)


@cache
def photo(name: str) -> np.ndarray:
    from skimage import data  # a dev dependency: the benchmark's second background family

    img = np.asarray(getattr(data, name)())  # uint8, every one of PHOTOS (tests/test_scenes.py)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)


def photo_background(rng: np.random.Generator, name: str | None = None) -> np.ndarray:
    """A random part of one of :data:`PHOTOS` (or of ``name``), scaled to cover 640x480 at 1-2x, maybe mirrored."""
    return cover(photo(PHOTOS[int(rng.integers(len(PHOTOS)))] if name is None else name), rng)


def cover(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 640x480 part of ``img`` scaled to cover the frame at 1-2x, maybe mirrored."""
    h, w = img.shape[:2]
    zoom = max(W / w, H / h) * float(rng.uniform(1.0, 2.0))
    big = cv2.resize(img, (max(W, round(w * zoom)), max(H, round(h * zoom))), interpolation=cv2.INTER_LINEAR)
    x0 = int(rng.integers(0, big.shape[1] - W + 1))
    y0 = int(rng.integers(0, big.shape[0] - H + 1))
    out = big[y0 : y0 + H, x0 : x0 + W]
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def placement(size: int, tilt: float, cx: float, cy: float) -> np.ndarray:
    """The 2x3 affine map from a 48x48 face's pixels to the frame: scale to ``size``, rotate by ``tilt`` (degrees,
    counter-clockwise in the image), centre on (cx, cy)."""
    matrix = cv2.getRotationMatrix2D((24.0, 24.0), tilt, size / 48.0)
    matrix[:, 2] += (cx - 24.0, cy - 24.0)
    return matrix


@dataclass(frozen=True)
class Rendering:
    """Which parts of a face's rendering into its scene apply (all, for the benchmark); switching one off leaves
    the scenes otherwise identical (the same random draws), so its cost can be measured (``rendering.py``)."""

    feather: bool = True  # the face's edges blended into the background (else its whole square pasted)
    brightness: bool = True  # the face's brightness scaled by 0.7-1.25
    noise: bool = True  # the camera's noise over the frame


#: The benchmark's rendering and its parts switched off, by name (``bench.py --rendering``, ``rendering.py``).
RENDERINGS = {
    "full": Rendering(),
    "no-feather": Rendering(feather=False),
    "no-brightness": Rendering(brightness=False),
    "no-noise": Rendering(noise=False),
    "none": Rendering(feather=False, brightness=False, noise=False),
}


def paste(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray, brightness: float, feather: bool = True) -> None:
    """Blend a 48x48 gray face into ``frame`` through ``matrix``, with feathered edges (or as a hard square)."""
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    up = int(np.ceil(scale))  # warp from an upscaled copy: a smooth face, not blown-up pixels
    big = cv2.resize(face, (48 * up, 48 * up), interpolation=cv2.INTER_CUBIC).astype(np.float32) * brightness
    if feather:
        mask = np.zeros((48 * up, 48 * up), np.float32)
        r = 48 * up / 2
        cv2.ellipse(mask, (int(r), int(r)), (int(r * 0.98), int(r * 1.0)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), r * 0.12)
    else:
        mask = np.ones((48 * up, 48 * up), np.float32)
    m = matrix.copy()
    m[:, :2] /= up
    size = (frame.shape[1], frame.shape[0])
    warped = cv2.warpAffine(big, m, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(mask, m, size, flags=cv2.INTER_LINEAR)[..., None]
    frame[:] = np.clip(frame * (1 - alpha) + warped[..., None] * alpha, 0, 255).astype(np.uint8)


@dataclass
class Scene:
    frame: np.ndarray
    faces: list[dict] = field(default_factory=list)  # index, label, size, tilt, matrix, box


def scenes(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    n: int | None = None,
    extra: float = 0.05,
    backgrounds: str = "procedural",
    rendering: Rendering = Rendering(),
) -> Iterator[Scene]:
    """One scene per face (cycling through every size x tilt), plus ``extra`` of the count with two faces and
    as many with none, on backgrounds of the family ``backgrounds``, rendered as ``rendering`` says."""
    rng = np.random.default_rng(seed)
    n = len(images) if n is None else min(n, len(images))
    order = rng.permutation(len(images))[:n]
    cells = [(s, t) for s in SIZES for t in TILTS]
    plan = [[int(i)] for i in order] + [[] for _ in range(int(n * extra))]
    plan += [[int(a), int(b)] for a, b in rng.choice(len(images), (int(n * extra), 2), replace=False)]
    for k, members in enumerate(plan):
        frame = background(rng, backgrounds)
        faces: list[dict] = []
        for j, index in enumerate(members):
            size, tilt = cells[(k + j) % len(cells)]
            faces.append(
                {
                    "index": index,
                    "label": int(labels[index]),
                    **place(rng, frame, images[index], size, tilt, faces, rendering),
                }
            )
        with_noise = noisy(rng, frame)  # drawn either way: the next scenes stay the same
        yield Scene(with_noise if rendering.noise else frame, faces)


def place(
    rng: np.random.Generator,
    frame: np.ndarray,
    face: np.ndarray,
    size: int,
    tilt: float,
    others: list[dict],
    rendering: Rendering = Rendering(),
) -> dict:
    """Paste ``face`` into ``frame`` at ``size`` px and ``tilt``°, at a random place clear of ``others``, with a
    random brightness; returns its ``size``, ``tilt``, ``matrix`` and ``centre``."""
    for _ in range(50):  # a place inside the frame that does not overlap the other faces
        cx = rng.uniform(size * 0.75, W - size * 0.75)
        cy = rng.uniform(size * 0.75, H - size * 0.75)
        if all(np.hypot(cx - f["centre"][0], cy - f["centre"][1]) > (size + f["size"]) for f in others):
            break
    matrix = placement(size, tilt, cx, cy)
    brightness = float(rng.uniform(0.7, 1.25))
    paste(frame, face, matrix, brightness if rendering.brightness else 1.0, rendering.feather)
    return {"size": size, "tilt": tilt, "matrix": matrix, "centre": (cx, cy)}


def noisy(rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    """The frame with the camera's mild noise (σ = 3 grey levels)."""
    return np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)


def match(face: dict, boxes: np.ndarray) -> int | None:
    """The detected box that is this face: its centre within 35% of the face's size of the true centre, its side
    between half and twice the face's size. None when no box is."""
    best, best_d = None, None
    for i, (x, y, w, h) in enumerate(boxes):
        d = np.hypot(x + w / 2 - face["centre"][0], y + h / 2 - face["centre"][1])
        side = max(w, h)
        if (
            d <= 0.35 * face["size"]
            and 0.5 * face["size"] <= side <= 2 * face["size"]
            and (best_d is None or d < best_d)
        ):
            best, best_d = i, d
    return best


Pipeline = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # frame -> (boxes N×4, probabilities N×K)


def score(pipeline: Pipeline, all_scenes: list[Scene], crop_probs: np.ndarray) -> dict:
    """Found rate, false boxes, end-to-end accuracy and accuracy given found, per size and tilt and overall, with
    the crop accuracy of the same faces (``crop_probs``: the model on the 48x48 faces, indexed like the data)."""
    cells: dict = defaultdict(lambda: {"faces": 0, "found": 0, "right": 0, "crop_right": 0})
    false_frames = frames = 0
    seconds = 0.0
    right: list[int] = []  # each face, in scene order: 1 when found and classified right (for paired comparisons)
    for scene in all_scenes:
        t0 = time.perf_counter()
        boxes, probs = pipeline(scene.frame)
        seconds += time.perf_counter() - t0
        frames += 1
        used = set()
        for face in scene.faces:
            for key in ((face["size"], abs(face["tilt"])), ("all", "all")):
                c = cells[key]
                c["faces"] += 1
                c["crop_right"] += int(crop_probs[face["index"]].argmax() == face["label"])
            i = match(face, boxes)
            right.append(int(i is not None and probs[i].argmax() == face["label"]))
            if i is None:
                continue
            used.add(i)
            for key in ((face["size"], abs(face["tilt"])), ("all", "all")):
                cells[key]["found"] += 1
                cells[key]["right"] += int(probs[i].argmax() == face["label"])
        false_frames += int(len(boxes) > len(used))
    rows = {}
    for key, c in cells.items():
        rows[f"{key[0]}/{key[1]}"] = {
            "faces": c["faces"],
            "found": c["found"] / c["faces"],
            "accuracy": c["right"] / c["faces"],
            "accuracy_given_found": c["right"] / c["found"] if c["found"] else None,
            "crop_accuracy": c["crop_right"] / c["faces"],
        }
    return {
        "frames": frames,
        "false_box_frames": false_frames / frames,
        "ms_per_frame": 1000 * seconds / frames,
        "cells": rows,
        "right": right,
    }
