"""Leak-aware scores: faces with a near-identical twin in the training split can be left out of evaluation."""

import shutil

import cv2
import numpy as np
import pytest
import torch

from emotion.errors import DatasetError
from emotion.evaluate import evaluate
from emotion.evaluation.twins import drop_twins
from emotion.models import EmotionCNN
from emotion.models.checkpoint import save_safetensors
from tests.conftest import make_cfg


def test_has_twin_in_finds_reencoded_and_brightened_copies_but_not_other_faces(folder_data):
    from emotion.data.twins import has_twin_in

    faces = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((folder_data / "train").rglob("*.jpg"))]
    train = np.stack(faces[:40])
    ok, jpeg = cv2.imencode(".jpg", faces[3], [cv2.IMWRITE_JPEG_QUALITY, 75])
    reencoded = cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)
    brighter = np.clip(faces[7].astype(int) + 4, 0, 255).astype(np.uint8)
    evaluated = np.stack([reencoded, brighter, *faces[40:44]])
    assert has_twin_in(evaluated, train).tolist() == [True, True, False, False, False, False]


@pytest.fixture
def net_file(tmp_path):
    torch.manual_seed(0)
    return save_safetensors(EmotionCNN().eval(), tmp_path / "net.safetensors")


def test_evaluate_exclude_twins_scores_without_the_leaked_faces(folder_data, net_file, tmp_path):
    """exclude=twins leaves the leaked face out of the report; a plain evaluation scores the same faces in the same
    pass (``without_twins``), comparison included, and agrees with it."""
    leaked = sorted((folder_data / "test" / "happy").glob("PrivateTest_*"))[0]
    shutil.copy(leaked, folder_data / "train" / "happy" / "Training_leak.jpg")
    torch.manual_seed(1)
    other = save_safetensors(EmotionCNN().eval(), tmp_path / "other.safetensors")
    base = [f"ckpt_path={net_file}", f"data.root={folder_data}", "data.cache_dir=null", f"compare_to={other}"]
    full = evaluate(make_cfg(tmp_path / "a", base, config_name="eval"))
    clean = evaluate(make_cfg(tmp_path / "b", [*base, "exclude=twins"], config_name="eval"))
    assert full["excluded_twins"] is None and clean["excluded_twins"] == 1
    assert clean["n_images"] == full["n_images"] - 1 == 13
    assert clean["split_protocol"]["test_twins_excluded"] == 1
    assert full["without_twins"] == {"n_images": 13, "excluded_twins": 1, "accuracy": clean["accuracy"]}
    assert "without_twins" not in clean
    same_faces = {k: v for k, v in clean["compared_to"].items() if k not in ("model", "tta")}
    assert full["compared_to"]["without_twins"] == same_faces
    assert full["compared_to"]["n_images"] == 14


def test_exclude_twins_needs_the_training_split(folder_data, net_file, tmp_path):
    only_test = tmp_path / "only_test"
    shutil.copytree(folder_data / "test", only_test / "test")
    cfg = make_cfg(tmp_path / "c", [f"ckpt_path={net_file}", f"data.root={only_test}", "exclude=twins"], "eval")
    with pytest.raises(DatasetError, match="exclude=twins needs the training faces"):
        evaluate(cfg)
    plain = evaluate(make_cfg(tmp_path / "d", [f"ckpt_path={net_file}", f"data.root={only_test}"], "eval"))
    assert plain["n_images"] == 14 and "without_twins" not in plain  # no training faces: nothing to judge twins by


def test_evaluate_scores_an_onnx_export_like_its_source_and_refuses_garbage(folder_data, net_file, tmp_path):
    from emotion.errors import ModelFileError
    from emotion.serve.exporters import export

    onnx_path, _ = export(str(net_file), "onnx", str(tmp_path / "net.onnx"))
    base = [f"data.root={folder_data}", "data.cache_dir=null", "tta=flip"]
    torch_result = evaluate(make_cfg(tmp_path / "a", [f"ckpt_path={net_file}", *base], config_name="eval"))
    onnx_result = evaluate(make_cfg(tmp_path / "b", [f"ckpt_path={onnx_path}", *base], config_name="eval"))
    assert onnx_result["confusion_matrix"] == torch_result["confusion_matrix"]
    assert onnx_result["ece"] == pytest.approx(torch_result["ece"], abs=1e-4)
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="junk.onnx is not a loadable ONNX model"):
        evaluate(make_cfg(tmp_path / "c", ["ckpt_path=" + str(tmp_path / "junk.onnx"), *base], config_name="eval"))


def test_twins_are_judged_on_the_stored_faces_whatever_size_the_model_reads(folder_data, tmp_path):
    """A 32-px model is scored without exactly the faces a 48-px model is scored without."""
    from emotion.data.datamodule import FER2013DataModule

    leaked, other = sorted((folder_data / "test" / "happy").glob("PrivateTest_*"))[:2]
    shutil.copy(leaked, folder_data / "train" / "happy" / "Training_leak.jpg")
    # not a twin as stored (a ±8 checkerboard: mean difference 8 grey levels), but one once shrunk to 32 px
    face = cv2.imread(str(other), cv2.IMREAD_GRAYSCALE).astype(int)
    checker = np.where(np.add.outer(np.arange(48), np.arange(48)) % 2 == 0, 8, -8)
    cv2.imwrite(
        str(folder_data / "train" / "happy" / "Training_near.png"), np.clip(face + checker, 0, 255).astype(np.uint8)
    )
    kept = {}
    for size in (48, 32):
        dm = FER2013DataModule(root=str(folder_data), image_size=size, cache_dir=str(tmp_path / "cache"))
        dm.setup("test")
        assert drop_twins(dm, "test") == 1
        kept[size] = dm.raw.sources[dm.splits.test].tolist()
    assert kept[32] == kept[48] and len(kept[48]) == 13
