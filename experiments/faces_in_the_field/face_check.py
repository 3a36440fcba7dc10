"""Train the photo detector's face/non-face check: a small network that tells, from the 48x48 aligned crop the
emotion model would see, whether YuNet's detection is a face (``emotion/weights/face_check.onnx``).

    python experiments/faces_in_the_field/face_check.py collect --out logs/face_check/crops.npz   # 895 s, 2 workers
    python experiments/faces_in_the_field/face_check.py train --crops logs/face_check/crops.npz --epochs 10 \
        --out emotion/weights/face_check.onnx                                                     # 929 s
    python experiments/faces_in_the_field/face_check.py probe [--check FILE] [--threshold P]     # held-out textures

``collect`` places training faces (never PublicTest) into 640x480 scenes — one face in most, none in some, size
log-uniform 64-240 px, tilt uniform ±40° — on backgrounds the benchmark never shows: ``scenes.py``'s procedural
family and :data:`TRAINING_TEXTURES` (scikit-image pictures outside ``scenes.PHOTOS``, rendered pages of text,
star fields), so that the benchmark's photographs stay unseen. The photo detector's whole-frame searches record
every detection down to score 0.1; each one's aligned crop is a face when ``scenes.match`` says it is the true face,
else a texture (or a part of a face). ``train`` adds the training faces' own 48x48 crops, slightly misaligned, as
faces (real surroundings rather than the scenes' feathered edges) and random face-framed windows of
:data:`WINDOW_TEXTURES` as non-faces, holds out a tenth of the scenes' frames, trains with Lightning and exports to
ONNX (input: pixels in [0, 1]; the per-crop standardisation is inside the graph). ``probe`` counts how often the
check takes random windows of each of the benchmark's photographs for a face.
"""

from __future__ import annotations

import argparse
import os
import string
import sys
import time
from dataclasses import replace
from functools import cache
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import PHOTOS, H, W, background, cover, match, noisy, photo_background, place  # noqa: E402

from emotion.atomic import atomic_open  # noqa: E402
from emotion.serve.faces import CHECK_SCORE, FER_LANDMARKS, aligned_crop, photo_detector  # noqa: E402

FLOOR = 0.1  # the weakest detection recorded (the photo detector's closer looks start there)
#: scikit-image pictures that are in its wheel, have no human face and are not among the benchmark's ``PHOTOS``
TRAINING_PICTURES = (
    "stereo_motorcycle",
    "logo",
    "horse",
    "checkerboard",
    "colorwheel",
    "shepp_logan_phantom",
    "binary_blobs",
)
TRAINING_TEXTURES = ("procedural", "pictures", "text", "stars")


@cache
def picture(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    img = np.asarray(img[0] if isinstance(img, tuple) else img)
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / max(float(img.max()), 1e-9) * 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)


def text_page(rng: np.random.Generator) -> np.ndarray:
    """Lines of random words in one of OpenCV's Hershey fonts, dark on a light page (or the reverse)."""
    paper, ink = sorted(rng.integers(0, 256, 2))[::-1] if rng.random() < 0.8 else sorted(rng.integers(0, 256, 2))
    page = np.full((H, W, 3), int(paper), np.uint8)
    scale, thick = float(rng.uniform(0.4, 2.0)), int(rng.integers(1, 4))
    font = int(rng.choice([0, 1, 2, 3, 4, 6, 7]))
    step = int(30 * scale) + 6
    letters = np.array(list(string.ascii_letters + string.digits + ".,;:()-"))
    for y in range(int(rng.integers(10, 30)), H + step, step):
        words = ["".join(rng.choice(letters, int(rng.integers(1, 10)))) for _ in range(40)]
        cv2.putText(page, " ".join(words), (int(rng.integers(-50, 20)), y), font, scale, (int(ink),) * 3, thick)
    turn = cv2.getRotationMatrix2D((W / 2, H / 2), float(rng.uniform(-20, 20)), float(rng.uniform(1.0, 1.4)))
    page = cv2.warpAffine(page, turn, (W, H), borderMode=cv2.BORDER_REFLECT)
    return cv2.GaussianBlur(page, (0, 0), float(rng.uniform(0.3, 1.5)))


def star_field(rng: np.random.Generator) -> np.ndarray:
    """Points and small blurred ellipses of light on a dark ground."""
    sky = np.zeros((H, W, 3), np.float32) + rng.uniform(0, 40)
    for _ in range(int(rng.integers(100, 1500))):
        colour = [float(c) for c in rng.uniform(80, 255) * rng.uniform(0.7, 1.0, 3)]
        axes = (int(rng.integers(0, 6)), int(rng.integers(0, 6)))
        centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        cv2.ellipse(sky, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    sky = cv2.GaussianBlur(sky, (0, 0), float(rng.uniform(0.5, 2.5)))
    return np.clip(sky * rng.uniform(1.0, 3.0), 0, 255).astype(np.uint8)


def picture_background(rng: np.random.Generator) -> np.ndarray:
    """A random part of one of :data:`TRAINING_PICTURES`, as ``scenes.photo_background`` cuts the benchmark's."""
    return cover(picture(TRAINING_PICTURES[int(rng.integers(len(TRAINING_PICTURES)))]), rng)


def fractal_noise(rng: np.random.Generator) -> np.ndarray:
    """Noise with a 1/f^β spectrum (β 0.5-2.5: from gravel-like grain to smooth clouds), gray or coloured."""
    fy, fx = np.meshgrid(np.fft.fftfreq(H), np.fft.rfftfreq(W), indexing="ij")
    power = np.maximum(np.hypot(fx, fy), 1.0 / W) ** -float(rng.uniform(0.5, 2.5))
    channels = 1 if rng.random() < 0.5 else 3
    img = np.stack(
        [np.fft.irfft2(power * np.exp(2j * np.pi * rng.random(power.shape)), (H, W)) for _ in range(channels)], -1
    )
    img = (img - img.mean()) / (img.std() + 1e-9) * rng.uniform(20, 60) + rng.uniform(60, 190)
    return np.clip(np.broadcast_to(img, (H, W, 3)), 0, 255).astype(np.uint8)


def strokes(rng: np.random.Generator) -> np.ndarray:
    """Many thin strokes around one direction (grass, hair, fur)."""
    base = rng.uniform(30, 200, 3)
    img = np.zeros((H, W, 3), np.float32) + base
    direction = rng.uniform(0, np.pi)
    for _ in range(int(rng.integers(800, 4000))):
        a = direction + rng.normal(0, 0.35)
        length = rng.uniform(10, 80)
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        end = (int(x + length * np.cos(a)), int(y + length * np.sin(a)))
        colour = [float(c) for c in np.clip(base * rng.uniform(0.4, 1.6), 0, 255)]
        cv2.line(img, (int(x), int(y)), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return np.clip(cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.2))), 0, 255).astype(np.uint8)


def pebbles(rng: np.random.Generator) -> np.ndarray:
    """Overlapping shaded ellipses (gravel, coins, cells)."""
    img = np.zeros((H, W, 3), np.float32) + rng.uniform(0, 200, 3)
    for _ in range(int(rng.integers(150, 1200))):
        axes = (int(rng.integers(4, 40)), int(rng.integers(4, 40)))
        centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        colour = [float(c) for c in rng.uniform(0, 255, 3)]
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        if rng.random() < 0.5:  # a highlight: round things lit from one side
            hl = (centre[0] - axes[0] // 3, centre[1] - axes[1] // 3)
            cv2.ellipse(img, hl, (max(1, axes[0] // 3), max(1, axes[1] // 3)), 0, 0, 360, [c * 1.4 for c in colour], -1)
    return np.clip(cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.0))), 0, 255).astype(np.uint8)


#: textures only for random windows (no detection run on them): the breadth YuNet's own false boxes lack
WINDOW_TEXTURES = (*TRAINING_TEXTURES, "fractal", "strokes", "pebbles")


def training_background(rng: np.random.Generator, family: str) -> np.ndarray:
    makers = {"pictures": picture_background, "text": text_page, "stars": star_field, "fractal": fractal_noise}
    makers |= {"strokes": strokes, "pebbles": pebbles}
    return makers[family](rng) if family in makers else background(rng, "procedural")


def windows(frame: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Aligned crops of ``n`` random places of ``frame`` framed as faces would be: FER2013's landmark template at a
    random place, size 40-240 px and tilt ±40°, through ``aligned_crop``."""
    h, w = frame.shape[:2]
    out = np.empty((n, 48, 48), np.uint8)
    for j in range(n):
        side = float(np.exp(rng.uniform(np.log(40), np.log(240))))
        m = cv2.getRotationMatrix2D((24.0, 24.0), float(rng.uniform(-40, 40)), side / 48.0)
        m[:, 2] += (rng.uniform(side / 2, w - side / 2) - 24.0, rng.uniform(side / 2, h - side / 2) - 24.0)
        out[j] = aligned_crop(frame, cv2.transform(FER_LANDMARKS.reshape(-1, 1, 2), m).reshape(5, 2))
    return out


def texture_windows(n: int, seed: int, per_background: int = 10) -> np.ndarray:
    """``n`` random :func:`windows` of :data:`WINDOW_TEXTURES` (non-faces for training)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(0, n, per_background):
        frame = noisy(rng, training_background(rng, WINDOW_TEXTURES[int(rng.integers(len(WINDOW_TEXTURES)))]))
        parts.append(windows(frame, rng, min(per_background, n - k)))
    return np.concatenate(parts)


def probe(a: argparse.Namespace) -> None:
    """How often the check takes a random window of each benchmark photograph (never trained on) for a face."""
    from emotion.serve.face_check import FaceCheck

    check = FaceCheck(a.check)
    threshold = CHECK_SCORE if a.threshold is None else a.threshold
    rng = np.random.default_rng(a.seed)
    shares = {}
    for name in PHOTOS:
        p = check(np.concatenate([windows(noisy(rng, photo_background(rng, name)), rng, a.n // 10) for _ in range(10)]))
        shares[name] = float(np.mean(p >= threshold))
    print(f"{a.check} at P(face) >= {threshold:.3f}: random windows taken for faces, per benchmark photograph")
    print(" · ".join(f"{k} {v:.3f}" for k, v in shares.items()))
    print(f"mean {np.mean(list(shares.values())):.3f}, worst {max(shares.values()):.3f}")
    if a.crops:  # the held-out scene crops of ``train --seed a.train_seed``, scored by this file
        from face_check_train import held_out, report  # noqa: PLC0415 (torch only for this option)

        z = np.load(a.crops)
        held = held_out(z["frame"], np.random.default_rng(a.train_seed))
        scores = np.concatenate([check(c) for c in np.array_split(z["crops"][held], 20)])
        names = [str(f) for f in z["families"]]
        report(scores, z["face"][held], z["score"][held], z["family"][held], names, threshold)


def collect_chunk(job: tuple[np.ndarray, np.ndarray, int, float]) -> dict[str, np.ndarray]:
    """Every detection of the scenes of a chunk of training faces: aligned crop, face or not, score, family,
    frame (one scene per face index; a scene is face-free with probability ``empty``)."""
    images, ids, seed, empty = job
    detector = replace(photo_detector(), score_threshold=FLOOR, recheck=0, check=0.0)  # every detection, unchecked
    out: dict[str, list] = {"crops": [], "face": [], "score": [], "family": [], "frame": []}
    for face, i in zip(images, ids):
        rng = np.random.default_rng([seed, int(i)])
        family = int(rng.integers(len(TRAINING_TEXTURES)))
        frame = training_background(rng, TRAINING_TEXTURES[family])
        truth = None
        if rng.random() >= empty:
            size = int(round(np.exp(rng.uniform(np.log(64), np.log(240)))))
            truth = place(rng, frame, face, size, float(rng.uniform(-40, 40)), [])
        frame = noisy(rng, frame)
        for row in detector.rows(frame):
            out["crops"].append(aligned_crop(frame, row[4:14].reshape(5, 2)))
            out["face"].append(truth is not None and match(truth, row[None, :4]) == 0)
            out["score"].append(row[14])
            out["family"].append(family)
            out["frame"].append(int(i))
    return {
        "crops": np.array(out["crops"], np.uint8).reshape(-1, 48, 48),
        "face": np.array(out["face"], bool),
        "score": np.array(out["score"], np.float32),
        "family": np.array(out["family"], np.int8),
        "frame": np.array(out["frame"], np.int64),
    }


def collect(a: argparse.Namespace) -> None:
    from emotion.data.datamodule import FER2013DataModule

    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    idx = np.random.default_rng(a.seed).permutation(dm.splits.train)[: a.n]
    images = dm.raw.images[idx]
    t0 = time.perf_counter()
    chunks = np.array_split(np.arange(len(idx)), max(1, 8 * a.workers))
    parts = []
    with Pool(a.workers) as pool:
        for part in pool.imap(collect_chunk, [(images[c], idx[c], a.seed, a.empty) for c in chunks]):
            parts.append(part)
            done = sum(len(np.unique(p["frame"])) for p in parts)
            print(
                f"{len(parts)}/{len(chunks)} chunks ({done} frames with detections), {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(a.out) as f:
        np.savez_compressed(f, **table, families=np.array(TRAINING_TEXTURES), faces_used=idx)
    for k, fam in enumerate(TRAINING_TEXTURES):
        here = table["family"] == k
        print(f"{fam}: {here.sum()} detections, {table['face'][here].sum()} of them faces")
    print(
        f"{len(idx)} scenes, {len(table['face'])} detections ({table['face'].sum()} faces), "
        f"{time.perf_counter() - t0:.0f} s -> {a.out}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="detections on training faces in scenes of training textures")
    c.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    c.add_argument("--out", type=Path, default=Path("logs/face_check/crops.npz"))
    c.add_argument("--n", type=int, default=8000, help="scenes (one training face each, unless empty)")
    c.add_argument("--empty", type=float, default=0.2, help="share of scenes without a face")
    c.add_argument("--seed", type=int, default=23)
    c.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    t = sub.add_parser("train", help="train the check on collected crops and export it to ONNX")
    t.add_argument("--crops", type=Path, default=Path("logs/face_check/crops.npz"))
    t.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    t.add_argument("--out", type=Path, default=Path("emotion/weights/face_check.onnx"))
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--windows", type=int, default=40000, help="random texture windows added as non-faces")
    t.add_argument("--own", type=int, default=15000, help="training faces' own crops added as faces")
    t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("probe", help="random windows of the benchmark's photographs through a trained check")
    r.add_argument("--check", type=Path, default=Path("emotion/weights/face_check.onnx"))
    r.add_argument("--threshold", type=float, help=f"P(face) needed (default {CHECK_SCORE}, the detectors')")
    r.add_argument("--n", type=int, default=500, help="windows per photograph")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--crops", type=Path, help="also score the held-out scene crops of this collect file")
    r.add_argument("--train-seed", type=int, default=0, help="the train seed that chose the held-out scenes")
    a = p.parse_args()
    if a.command == "collect":
        collect(a)
    elif a.command == "probe":
        probe(a)
    else:
        from face_check_train import train  # noqa: PLC0415 (the training stack only for this command)

        train(a)


if __name__ == "__main__":
    main()
