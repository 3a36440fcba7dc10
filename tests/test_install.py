"""The serving install, as a user gets it: ``pip install emotion`` into a fresh virtual environment (slow: it
downloads or builds OpenCV, ONNX Runtime, NumPy, matplotlib)."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_serving_install_predicts_with_the_shipped_default_model_and_has_no_torch(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    source = tmp_path / "src"  # a copy of the package, so the build writes nothing into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "emotion"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if name == "emotion" else {}),
        )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(source)], capture_output=True, text=True, timeout=1200
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    installed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=json"], capture_output=True, text=True)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert {"onnxruntime", "opencv-python", "numpy"} <= names
    assert not names & {"torch", "torchvision", "lightning", "hydra-core", "tensorboard", "opencv-python-headless"}

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    python = str(venv / "bin" / "python")
    run = lambda *args: subprocess.run([python, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)  # noqa: E731
    res = run("-m", "emotion.predict", str(photo), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    (face,) = json.loads(res.stdout)
    assert face["label"] in face["probs"] and abs(sum(face["probs"].values()) - 1) < 1e-3
    from PIL import Image

    pytest.importorskip("pillow_heif").register_heif_opener()
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.heic", quality=95)  # as an iPhone saves
    res = run("-m", "emotion.predict", str(tmp_path / "astronaut.heic"), "--json")
    assert res.returncode == 0 and json.loads(res.stdout)[0]["label"] == face["label"], res.stderr[-3000:]
    api = run("-c", f"import emotion; print(emotion.detect_emotions({str(photo)!r})[0].label)")
    assert api.returncode == 0 and api.stdout.strip() == face["label"], api.stderr[-2000:]
    cam = run("-m", "emotion.cam", "--source", str(frames), "--headless", "--table", str(tmp_path / "t.csv"))
    assert cam.returncode == 0 and "3 frames, 3 with faces" in cam.stdout, cam.stderr[-2000:]
    songs = run("-m", "emotion.songs", "--emotion", face["label"], "-n", "2")
    assert songs.returncode == 0, songs.stderr[-2000:]
    train = run("-m", "emotion.train", "experiment=demo")
    assert train.returncode != 0 and "pip install -e '.[train]'" in train.stderr and "Traceback" not in train.stderr
    assert np.isfinite(list(face["probs"].values())).all()
