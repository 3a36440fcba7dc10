"""Temperature scaling: fitted on one half, reported on the other, carried by the model file to every consumer."""

import json

import numpy as np
import pytest
import torch

from emotion.evaluation.calibration import binned_ece, calibrate, calibration, ece_reference, fit_temperature
from emotion.models import EmotionCNN
from emotion.models.checkpoint import load_net, save_safetensors
from emotion.serve.exporters import export
from emotion.serve.predictor import Predictor
from tests.conftest import make_cfg


def test_fit_temperature_recovers_the_scale_of_overconfident_logits():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 7, generator=g) * 1.5
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g).flatten()
    overconfident = true_logits * 3  # what an over-fitted network outputs: the same ranking, 3x too sharp
    t = fit_temperature(overconfident, labels)
    assert 2.6 < t < 3.4
    before, after = calibration(overconfident, labels, 1.0, 15), calibration(overconfident, labels, t, 15)
    assert after["ece"] < 0.03 < before["ece"] and after["nll"] < before["nll"]
    assert after["accuracy"] == before["accuracy"]


def test_binned_ece_is_torchmetrics_ece():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(500, 7, generator=g) * 2, torch.randint(0, 7, (500,), generator=g)
    conf, pred = torch.softmax(logits, 1).max(1)
    ours = binned_ece(conf.numpy(), (pred == labels).float().numpy(), 15)
    assert ours == pytest.approx(calibration(logits, labels, 1.0, 15)["ece"], abs=1e-6)


def test_ece_reference_tells_a_calibrated_model_from_a_miscalibrated_one_at_this_sample_size():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 1800)
    calibrated = rng.random(1800) < conf  # right exactly as often as it claims
    overconfident = rng.random(1800) < conf - 0.1
    ref = ece_reference(conf, calibrated, 15)
    assert 0.01 < ref["perfect_mean"] < ref["perfect_p95"] < 0.05  # binned ECE is > 0 even for a perfect model
    assert ref["p_value"] > 0.05
    assert ece_reference(conf, overconfident, 15)["p_value"] < 0.01
    # the floor falls with the number of faces
    big = rng.uniform(0.3, 1.0, 18000)
    assert ece_reference(big, rng.random(18000) < big, 15, draws=200)["perfect_mean"] < ref["perfect_mean"] / 2


def test_temperature_travels_in_the_file_and_every_consumer_uses_it(tmp_path):
    torch.manual_seed(0)
    net = EmotionCNN(temperature=2.5).eval()
    path = save_safetensors(net, tmp_path / "t.safetensors")
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(faces).unsqueeze(1)) / 2.5, 1).numpy()
    assert load_net(path).temperature == 2.5
    assert np.allclose(Predictor(str(path)).classify(faces), expected, atol=1e-6)
    onnx_path, diff = export(str(path), "onnx", str(tmp_path / "t.onnx"))
    assert diff < 1e-4 and np.allclose(Predictor(str(onnx_path)).classify(faces), expected, atol=1e-4)
    with pytest.raises(ValueError, match="temperature must be a finite value > 0"):
        EmotionCNN(temperature=0)


def test_calibrate_cli_fits_on_one_half_reports_on_the_other_and_writes_the_model(folder_data, tmp_path):
    torch.manual_seed(0)
    path = save_safetensors(EmotionCNN().eval(), tmp_path / "net.safetensors")
    cfg = make_cfg(
        tmp_path,
        [f"ckpt_path={path}", f"data.root={folder_data}", "data.cache_dir=null", "split=train"],
        config_name="calibrate",
    )
    result = calibrate(cfg)
    assert result["fit_faces"] == result["report_faces"] == 28  # 8 per class, 7 classes, halved
    calibrated = load_net(result["calibrated_model"])
    assert calibrated.temperature == pytest.approx(result["temperature"]) and result["temperature"] > 0
    assert result["after"]["accuracy"] == result["before"]["accuracy"]
    saved = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert [row["threshold"] for row in saved["thresholds_after"]] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert (tmp_path / "run" / "reliability.png").stat().st_size > 1000
    assert result["calibrated_model"] == str(tmp_path / "net.calibrated.safetensors")  # beside the input


def test_calibrate_writes_a_shipped_models_calibration_into_the_run_folder_and_refuses_a_misleading_name(
    folder_data, tmp_path
):
    """The package's weights folder is not written to (in an installed package it may be read-only); ``out=`` must be
    a .safetensors name, since every reader goes by it (``out=m.onnx`` used to get safetensors bytes)."""
    from emotion.errors import UserError
    from emotion.models.pretrained import WEIGHTS_DIR

    before = sorted(WEIGHTS_DIR.iterdir())
    args = ["pretrained=emotion_vgg_v8", f"data.root={folder_data}", "data.cache_dir=null", "split=train"]
    result = calibrate(make_cfg(tmp_path, args, config_name="calibrate"))
    assert result["calibrated_model"] == str(tmp_path / "run" / "emotion_vgg_v8.calibrated.safetensors")
    assert load_net(result["calibrated_model"]).temperature == pytest.approx(result["temperature"])
    assert sorted(WEIGHTS_DIR.iterdir()) == before
    with pytest.raises(UserError, match=r"out=.*m.onnx: calibrate writes a .safetensors model file.*name it .*m.safe"):
        calibrate(make_cfg(tmp_path, [*args, f"out={tmp_path}/m.onnx"], config_name="calibrate"))
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "taken").write_text("a file where a folder would go")
    with pytest.raises(UserError, match=r"out=.*taken/m.safetensors: cannot write in .*taken \(.*\); give out=PATH"):
        calibrate(make_cfg(tmp_path, [*args, f"out={tmp_path}/taken/m.safetensors"], config_name="calibrate"))


def test_cam_labels_low_confidence_faces_uncertain():
    from emotion.labels import FER2013_CLASSES
    from emotion.serve.draw import draw_faces, face_text
    from emotion.serve.predictor import Face

    sure = Face((10, 10, 60, 60), np.array([0.05, 0, 0, 0.8, 0.1, 0, 0.05]), FER2013_CLASSES)
    unsure = Face((100, 10, 60, 60), np.array([0.2, 0.1, 0.1, 0.1, 0.3, 0.1, 0.1]), FER2013_CLASSES)
    assert face_text(sure, 0.4) == "happy 80%"
    assert face_text(unsure, 0.4) == "uncertain (sad? 30%)" and face_text(unsure, 0.0) == "sad 30%"
    frame = draw_faces(np.zeros((120, 200, 3), np.uint8), [sure, unsure], uncertain_below=0.4)
    assert tuple(frame[40, 10]) == (80, 200, 60) and tuple(frame[40, 100]) == (160, 160, 160)  # box sides


@pytest.mark.parametrize(("bins", "shown"), [("0", "0"), ("2.5", "2.5"), ("many", "'many'")])
def test_calibrate_refuses_a_bin_count_that_is_not_a_whole_number_before_any_work(tmp_path, bins, shown):
    """bins=0 used to fail inside torchmetrics, as Hydra's two-line error, after the model had scored the split."""
    from tests.test_train import run_cli

    res = run_cli("-m", "emotion.calibrate", "pretrained=emotion_cnn", f"paths.root_dir={tmp_path}", f"bins={bins}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"error: bins must be a whole number >= 1, got {shown}; e.g. bins=15"]
