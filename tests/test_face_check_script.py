"""The face check's training script runs end to end on a tiny generated set: collect, train, a loadable check."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emotion.data.synthetic import write_dataset
from emotion.serve.face_check import FaceCheck

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "faces_in_the_field" / "face_check.py"
pytest.importorskip("skimage.data")


def test_collect_then_train_gives_a_check_the_detectors_can_load(tmp_path):
    data = write_dataset(tmp_path / "fer", n_train=40, n_val=4, n_test=4, seed=3)
    crops, out = tmp_path / "crops.npz", tmp_path / "check.onnx"
    run = [sys.executable, str(SCRIPT)]
    collect = ["collect", "--data", str(data), "--n", "24", "--workers", "1", "--out", str(crops)]
    subprocess.run([*run, *collect], check=True, capture_output=True)
    table = np.load(crops)
    assert table["crops"].shape[1:] == (48, 48) and len(table["crops"]) == len(table["face"]) > 0
    train = ["train", "--data", str(data), "--crops", str(crops), "--epochs", "1", "--windows", "60", "--own", "30"]
    done = subprocess.run([*run, *train, "--out", str(out)], check=True, capture_output=True, text=True)
    assert "held-out AUROC" in done.stdout
    check = FaceCheck(out)
    p = check(np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8))
    assert p.shape == (5,) and ((p >= 0) & (p <= 1)).all()
