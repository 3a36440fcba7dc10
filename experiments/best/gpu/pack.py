"""Pack what a GPU run of `experiment=best` needs into one folder small enough to travel to a lent machine (64 MiB):
FER2013's training faces as lossless WebP mosaics (47 MB instead of 53 MB of PNG files), PublicTest's JPEG files as
they are (a zip), and the teacher in float16. `unpack.py` rebuilds the Kaggle layout there, pixel for pixel.

    python experiments/best/gpu/pack.py --data ../shared/data/fer2013 --teacher emotion_vgg_v8_v9 --out .gpu
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

GRID = 64  # faces per mosaic side: 64 × 48 px = 3,072 px (WebP allows 16,383)
FACE = 48


def pack_train(train: Path, out: Path) -> int:
    paths = sorted(train.glob("*/*.png"))
    if not paths:
        raise SystemExit(f"{train} holds no */*.png files; expected FER2013's Kaggle layout train/<class>/*.png")
    faces = np.zeros((len(paths), FACE, FACE), np.uint8)
    for i, p in enumerate(paths):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None or img.shape != (FACE, FACE):
            raise SystemExit(f"{p}: not a {FACE}×{FACE} grayscale image")
        faces[i] = img
    per = GRID * GRID
    for k in range(0, len(paths), per):
        chunk = faces[k : k + per]
        tiles = np.zeros((per, FACE, FACE), np.uint8)
        tiles[: len(chunk)] = chunk
        mosaic = tiles.reshape(GRID, GRID, FACE, FACE).transpose(0, 2, 1, 3).reshape(GRID * FACE, GRID * FACE)
        ok, buf = cv2.imencode(".webp", mosaic, [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: lossless
        if not ok:
            raise SystemExit("OpenCV could not encode WebP")
        (out / f"train{k // per:02d}.webp").write_bytes(buf.tobytes())
    index = [str(p.relative_to(train)) for p in paths]
    (out / "train_index.json.gz").write_bytes(gzip.compress(json.dumps(index).encode()))
    return len(paths)


def cast_copy(src: Path, dst: Path, dtype: torch.dtype) -> None:
    """``src``'s floating-point tensors as ``dtype`` in ``dst``, with its metadata (spec, class names) unchanged."""
    with safe_open(str(src), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        meta = f.metadata()
    save_file({k: t.to(dtype) if t.is_floating_point() else t for k, t in tensors.items()}, str(dst), metadata=meta)


def pack_teacher(name: str, out: Path) -> None:
    from emotion.models.distill import teacher_file

    cast_copy(Path(teacher_file(name)), out / "teacher_fp16.safetensors", torch.float16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--teacher", default="emotion_vgg_v8_v9")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    n = pack_train(a.data / "train", a.out)
    with zipfile.ZipFile(a.out / "test.zip", "w", zipfile.ZIP_STORED) as z:  # JPEG bytes as they are
        for f in sorted((a.data / "test").rglob("*.jpg")):
            z.write(f, f.relative_to(a.data).as_posix())
    pack_teacher(a.teacher, a.out)
    total = sum(f.stat().st_size for f in a.out.rglob("*") if f.is_file())
    print(f"{n} training faces, test.zip, teacher: {total / 2**20:.1f} MiB in {a.out}")


if __name__ == "__main__":
    main()
