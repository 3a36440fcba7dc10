"""Rebuild FER2013's Kaggle layout from `pack.py`'s folder (on the lent machine) and the teacher in float32.

python experiments/best/gpu/unpack.py .gpu /tmp/fer2013 /tmp/teacher.safetensors
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from pack import FACE, GRID, cast_copy


def write_mosaic(args: tuple[Path, list[str], Path]) -> int:
    src, names, train = args
    mosaic = cv2.imdecode(np.frombuffer(src.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    tiles = mosaic.reshape(GRID, FACE, GRID, FACE).transpose(0, 2, 1, 3).reshape(-1, FACE, FACE)
    for name, tile in zip(names, tiles):
        dst = train / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), tile)
    return len(names)


def main(packed: Path, root: Path, teacher: Path) -> None:
    index = json.loads(gzip.decompress((packed / "train_index.json.gz").read_bytes()))
    per = GRID * GRID
    jobs = [
        (packed / f"train{k // per:02d}.webp", index[k : k + per], root / "train") for k in range(0, len(index), per)
    ]
    with ProcessPoolExecutor() as pool:
        n = sum(pool.map(write_mosaic, jobs))
    with zipfile.ZipFile(packed / "test.zip") as z:
        z.extractall(root)
    cast_copy(packed / "teacher_fp16.safetensors", teacher, torch.float32)
    print(f"{n} training faces and {sum(1 for _ in (root / 'test').rglob('*.jpg'))} test faces in {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
