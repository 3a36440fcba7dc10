"""A model's input size is a fact of the model (its spec), not of the data config: a network trained on 32-px faces is
evaluated, calibrated and quantized on 32-px faces although the data set and ``data.image_size`` say 48."""

import pytest

from emotion.evaluate import evaluate
from emotion.evaluation.calibration import calibrate
from emotion.models import EmotionVGG
from emotion.models.checkpoint import load_net, save_safetensors
from emotion.serve import quantize
from emotion.serve.exporters import export
from tests.conftest import make_cfg


@pytest.fixture
def small_net_file(tmp_path):
    net = EmotionVGG(widths=(4, 8), fc=8, input_size=32).eval()
    return save_safetensors(net, tmp_path / "m32.safetensors")


def test_evaluate_and_calibrate_feed_the_model_its_own_input_size(small_net_file, folder_data, tmp_path):
    base = [f"ckpt_path={small_net_file}", f"data.root={folder_data}"]
    result = evaluate(make_cfg(tmp_path, base, config_name="eval"))
    assert result["n_images"] == 14 and 0 <= result["accuracy"] <= 1
    out = tmp_path / "m32.calibrated.safetensors"
    cal = calibrate(make_cfg(tmp_path, [*base, "split=train", f"out={out}"], config_name="calibrate"))
    assert cal["fit_faces"] + cal["report_faces"] == 56
    assert load_net(out).input_size == 32 and load_net(out).temperature == pytest.approx(cal["temperature"])


def test_int8_calibration_faces_come_at_the_models_input_size(small_net_file, folder_data, tmp_path):
    assert quantize.training_faces(folder_data, 10, 32).shape == (10, 32, 32)
    out, _ = export(str(small_net_file), "onnx-int8", str(tmp_path / "m32.int8.onnx"), calib=str(folder_data))
    assert load_net(out).input_size == 32
