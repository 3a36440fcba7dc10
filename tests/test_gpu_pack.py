"""experiments/best/gpu/: what travels to a lent GPU rebuilds FER2013's layout pixel for pixel, and the float16
teacher comes back as float32 with its metadata (the spec and class names every consumer reads)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "best" / "gpu"))
import pack  # noqa: E402
import unpack  # noqa: E402

from emotion.labels import FER2013_CLASSES  # noqa: E402


@pytest.fixture
def small_grid(monkeypatch):
    monkeypatch.setattr(pack, "GRID", 2)  # 4 faces per mosaic: several mosaics, the last one part-filled
    monkeypatch.setattr(unpack, "GRID", 2)


def test_pack_then_unpack_rebuilds_the_layout_exactly(tmp_path, small_grid):
    rng = np.random.default_rng(0)
    src = tmp_path / "fer"
    for i, label in enumerate(FER2013_CLASSES * 3):  # 21 training faces → 6 mosaics
        (src / "train" / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / "train" / label / f"Training_{i}.png"), rng.integers(0, 256, (48, 48), np.uint8))
    (src / "test" / "happy").mkdir(parents=True)
    cv2.imwrite(str(src / "test" / "happy" / "PublicTest_1.jpg"), rng.integers(0, 256, (48, 48), np.uint8))
    packed = tmp_path / "packed"
    packed.mkdir()
    assert pack.pack_train(src / "train", packed) == 21
    assert len(list(packed.glob("train*.webp"))) == 6
    with pack.zipfile.ZipFile(packed / "test.zip", "w") as z:
        z.write(src / "test" / "happy" / "PublicTest_1.jpg", "test/happy/PublicTest_1.jpg")
    pack.pack_teacher("emotion_vgg_v8", packed)

    out = tmp_path / "out"
    unpack.main(packed, out, tmp_path / "teacher.safetensors")
    for f in sorted((src / "train").rglob("*.png")):
        assert np.array_equal(cv2.imread(str(f), 0), cv2.imread(str(out / f.relative_to(src)), 0)), f
    assert len(list((out / "train").rglob("*.png"))) == 21
    assert (out / "test/happy/PublicTest_1.jpg").read_bytes() == (src / "test/happy/PublicTest_1.jpg").read_bytes()

    from safetensors import safe_open

    from emotion.models.pretrained import model_file

    with (
        safe_open(str(model_file("emotion_vgg_v8")), "pt") as a,
        safe_open(str(tmp_path / "teacher.safetensors"), "pt") as b,
    ):
        assert a.metadata() == b.metadata()
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():  # noqa: SIM118
            x, y = a.get_tensor(k), b.get_tensor(k)
            assert y.dtype == x.dtype
            torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-4)


def test_pack_names_a_folder_without_faces(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(SystemExit, match="holds no .*train/<class>/\\*.png"):
        pack.pack_train(tmp_path / "train", tmp_path)
