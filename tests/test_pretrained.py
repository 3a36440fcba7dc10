"""The model shipped in emotion/weights: loads safely, carries its spec, and is what the tools use by default."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import emotion
from emotion.evaluate import evaluate
from emotion.labels import FER2013_CLASSES
from emotion.models.pretrained import model_card, model_names, weights_path
from emotion.serve.predict import main as predict_main
from tests.conftest import ROOT, make_cfg

SHARED_FER = ROOT.parent / "shared" / "data" / "fer2013"


def test_shipped_model_loads_with_its_spec_and_is_small():
    assert all(weights_path(name).stat().st_size <= 25 * 2**20 for name in model_names())
    net = emotion.load_pretrained()
    assert net.class_names == FER2013_CLASSES and net.input_size == 48
    assert 0.3 < float(net.mean) < 0.7 and float(net.std) > 0
    assert model_card("emotion_cnn")["architecture"].startswith("EmotionCNN")  # the seed network is always shipped


def test_unknown_pretrained_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown pretrained model 'nope'; shipped: default, emotion_cnn"):
        weights_path("nope")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")  # FER2013 decoded once for all shipped models


def slow_if_teacher(name: str):
    """Shipped models are re-measured on FER2013 in the slow target (``make test-slow``); the default suite checks
    that the README's table is models.json's and that the served ONNX export is the safetensors model."""
    return pytest.param(name, marks=pytest.mark.slow)


@pytest.mark.skipif(not (SHARED_FER / "train").is_dir(), reason="needs ../shared/data/fer2013")
@pytest.mark.parametrize("name", [slow_if_teacher(name) for name in model_names()[1:]])
def test_shipped_models_reproduce_their_recorded_publictest_numbers(name, tmp_path, shared_cache):
    """What emotion/weights/models.json (and the README) records is what the shipped file scores: PublicTest
    accuracy with and without flip TTA, on all faces and without the faces that have a Training twin (one
    evaluation: flip TTA, compared with no TTA, both also scored without the twins)."""
    card = model_card(name)
    base = [f"pretrained={name}", f"data.root={SHARED_FER}", f"data.cache_dir={shared_cache}"]
    result = evaluate(make_cfg(tmp_path, [*base, "tta=flip", "compare_tta=none"], config_name="eval"))
    plain, without = result["compared_to"], result["without_twins"]
    assert result["n_images"] == 3589 and plain["tta"] == "none"
    assert without["excluded_twins"] == card["publictest_twins_excluded"] == 3589 - without["n_images"]
    measured = {
        "publictest_accuracy": plain["other_accuracy"],
        "publictest_accuracy_flip_tta": result["accuracy"],
        "publictest_without_twins_accuracy": plain["without_twins"]["other_accuracy"],
        "publictest_without_twins_accuracy_flip_tta": without["accuracy"],
    }
    for key, value in measured.items():
        assert value == pytest.approx(card[key], abs=6e-4), key  # recorded to 4 decimals


@pytest.mark.slow  # ten forward passes per face: ~2 min for the default model, ~5 min for the three
@pytest.mark.skipif(not (SHARED_FER / "train").is_dir(), reason="needs ../shared/data/fer2013")
@pytest.mark.parametrize("name", [n for n in model_names()[1:] if "publictest_accuracy_tencrop_tta" in model_card(n)])
def test_shipped_models_reproduce_their_recorded_tencrop_numbers(name, tmp_path, shared_cache):
    """The ten-crop TTA accuracies models.json records (all faces and without the twins) are what the file scores."""
    card = model_card(name)
    base = [f"pretrained={name}", f"data.root={SHARED_FER}", f"data.cache_dir={shared_cache}", "tta=tencrop"]
    result = evaluate(make_cfg(tmp_path, base, config_name="eval"))
    assert result["accuracy"] == pytest.approx(card["publictest_accuracy_tencrop_tta"], abs=6e-4)
    without = result["without_twins"]["accuracy"]
    assert without == pytest.approx(card["publictest_without_twins_accuracy_tencrop_tta"], abs=6e-4)


@pytest.fixture(scope="module")
def scene_detections(tmp_path_factory):
    """Where the first model's run keeps the detector's boxes for the next models (they do not depend on the model)."""
    return tmp_path_factory.mktemp("scenes") / "detections.npz"


@pytest.mark.slow  # 1,650 scenes through the detector: ~5-9 min for the first model, the next replay its boxes
@pytest.mark.timeout(1800)  # the first model's 9 min on a 2-core AVX2 machine is close to the suite's 600 s
@pytest.mark.skipif(not (SHARED_FER / "train").is_dir(), reason="needs ../shared/data/fer2013")
@pytest.mark.parametrize("name", [n for n in model_names()[1:] if "scenes_end_to_end" in model_card(n)])
def test_shipped_models_reproduce_their_recorded_numbers_on_faces_in_scenes(name, tmp_path, scene_detections):
    """models.json's faces-in-scenes figures (the README's column) are what the benchmark of the whole pipeline
    measures with the shipped file and default settings: PublicTest faces placed into scenes, found by the default
    detector, cropped and classified as ``predict`` does (``experiments/faces_in_the_field/bench.py``)."""
    card, out = model_card(name), tmp_path / "scenes.json"
    bench = ROOT / "experiments" / "faces_in_the_field" / "bench.py"
    args = ["--data", str(SHARED_FER), "--n", "1500", "--config", "yunet-aligned", "--model", name, "--out", str(out)]
    args += ["--detections", str(scene_detections)]
    subprocess.run([sys.executable, str(bench), *args], check=True, cwd=ROOT, capture_output=True)
    measured = json.loads(out.read_text())["yunet-aligned"]["cells"]["all/all"]
    assert measured["accuracy"] == pytest.approx(card["scenes_end_to_end"], abs=6e-4)
    assert measured["found"] == pytest.approx(card["scenes_found"], abs=6e-4)
    assert measured["crop_accuracy"] == pytest.approx(card["scenes_crop_accuracy"], abs=6e-4)


@pytest.mark.slow  # a calibration on FER2013
@pytest.mark.skipif(not (SHARED_FER / "train").is_dir(), reason="needs ../shared/data/fer2013")
def test_the_default_models_calibration_record_is_what_calibrate_measures(tmp_path, shared_cache):
    """models.json's temperature and report-half ECEs are reproduced by python -m emotion.calibrate on the file."""
    from emotion.evaluation.calibration import calibrate

    card = model_card("default")
    assert emotion.load_pretrained().temperature == pytest.approx(card["temperature"], abs=1e-3)
    base = ["pretrained=true", f"data.root={SHARED_FER}", f"data.cache_dir={shared_cache}"]
    base.append(f"out={tmp_path}/calibrated.safetensors")
    result = calibrate(make_cfg(tmp_path, base, config_name="calibrate"))
    assert result["temperature"] == pytest.approx(card["temperature"], abs=2e-3)
    assert result["before"]["ece"] == pytest.approx(card["ece_report_half_uncalibrated"], abs=6e-4)
    assert result["after"]["ece"] == pytest.approx(card["ece_report_half_calibrated"], abs=6e-4)


def test_predict_uses_the_shipped_model_by_default(tmp_path, capsys):
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8))
    assert predict_main([str(face), "--no-detect", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["label"] in FER2013_CLASSES and set(row["probs"]) == set(FER2013_CLASSES)


def test_tools_take_a_shipped_model_by_name(tmp_path, capsys):
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8))
    assert predict_main([str(face), "--no-detect", "--json", "--model", "emotion_cnn"]) == 0
    assert set(json.loads(capsys.readouterr().out)[0]["probs"]) == set(FER2013_CLASSES)
    assert predict_main([str(face), "--no-detect", "--model", "emotion_cnnn"]) == 2
    err = capsys.readouterr().err
    assert "'emotion_cnnn' is neither a model file nor a shipped model" in err and "default, emotion_cnn" in err


def test_evaluate_pretrained_on_a_folder(folder_data, tmp_path):
    cfg = make_cfg(tmp_path, ["pretrained=true", f"data.root={folder_data}", "tta=flip"], config_name="eval")
    result = evaluate(cfg)
    assert result["n_images"] == 14 and result["tta"] == "flip" and 0 <= result["accuracy"] <= 1


def test_the_shipped_onnx_export_is_the_same_model_as_its_safetensors():
    """The serving apps run the default model's shipped ONNX export (no torch): same spec and the same calibrated
    probabilities as the safetensors file it was exported from, on drawn faces and on noise."""
    from emotion.data.synthetic import draw_face
    from emotion.models.pretrained import onnx_path
    from emotion.serve.predictor import Predictor

    names = [n for n in model_names()[1:] if "onnx" in model_card(n)]
    assert model_card()["name"] in names
    rng = np.random.default_rng(0)
    faces = np.stack([draw_face(c, rng) for c in FER2013_CLASSES] + [rng.integers(0, 256, (48, 48), np.uint8)])
    for name in names:
        served, original = Predictor(str(onnx_path(name)), detector=None), Predictor(str(weights_path(name)), None)
        assert served.backend.spec == json.loads(json.dumps(original.backend.spec)), name
        assert np.abs(served.classify(faces) - original.classify(faces)).max() < 1e-4, name
    assert Predictor.from_pretrained(detector=None).model_path == str(onnx_path())
