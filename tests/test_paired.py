"""Comparing two models on the same faces: McNemar's exact test, ``evaluate compare_to=OTHER`` and ``compare_tta``."""

import pytest
import torch

from emotion.errors import UserError
from emotion.evaluate import evaluate
from emotion.evaluation.paired import mcnemar_p, paired_comparison
from emotion.models import EmotionCNN, EmotionVGG
from emotion.models.checkpoint import save_safetensors
from tests.conftest import make_cfg


@pytest.mark.parametrize(("only_a", "only_b"), [(0, 6), (1, 9), (5, 5), (184, 204), (30, 61), (400, 330)])
def test_mcnemar_p_is_the_two_sided_exact_binomial_test(only_a, only_b):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert mcnemar_p(only_a, only_b) == pytest.approx(expected, rel=1e-9)
    assert mcnemar_p(only_b, only_a) == mcnemar_p(only_a, only_b)


def test_no_disagreement_is_no_evidence():
    assert mcnemar_p(0, 0) == 1.0


def test_paired_comparison_counts_the_disagreements():
    a = torch.tensor([1, 1, 1, 0, 0, 1, 0, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0], dtype=torch.bool)
    c = paired_comparison(a, b)
    assert (c["only_this_right"], c["only_other_right"]) == (3, 1)
    assert c["accuracy"] - c["other_accuracy"] == pytest.approx((3 - 1) / 8)
    with pytest.raises(ValueError, match="different faces"):
        paired_comparison(a, b[:5])


def random_model_file(tmp_path, seed: int, net_class=EmotionCNN, **kwargs):
    torch.manual_seed(seed)
    return str(save_safetensors(net_class(**kwargs).eval(), tmp_path / f"{net_class.__name__}-{seed}.safetensors"))


def test_evaluate_compares_two_models_on_the_same_faces(folder_data, tmp_path):
    a, b = random_model_file(tmp_path, 0), random_model_file(tmp_path, 1)
    base = [f"data.root={folder_data}", "tta=flip"]
    alone = evaluate(make_cfg(tmp_path, [*base, f"ckpt_path={b}"], config_name="eval"))
    result = evaluate(make_cfg(tmp_path, [*base, f"ckpt_path={a}", f"compare_to={b}"], config_name="eval"))
    c = result["compared_to"]
    assert c["model"] == b and c["n_images"] == result["n_images"] == alone["n_images"] == 14
    assert c["accuracy"] == pytest.approx(result["accuracy"])
    assert c["other_accuracy"] == pytest.approx(alone["accuracy"])
    assert (c["only_this_right"] - c["only_other_right"]) / 14 == pytest.approx(c["accuracy"] - c["other_accuracy"])
    assert c["mcnemar_p"] == mcnemar_p(c["only_this_right"], c["only_other_right"])

    itself = evaluate(make_cfg(tmp_path, [*base, f"ckpt_path={a}", f"compare_to={a}"], config_name="eval"))
    assert itself["compared_to"]["only_this_right"] == itself["compared_to"]["only_other_right"] == 0
    assert itself["compared_to"]["mcnemar_p"] == 1.0


def test_compare_to_a_model_that_cannot_see_the_same_faces_is_a_clear_error(folder_data, tmp_path, monkeypatch):
    a = random_model_file(tmp_path, 0)
    small = random_model_file(tmp_path, 0, EmotionVGG, widths=[8, 16], fc=16, input_size=40)
    base = [f"data.root={folder_data}", f"ckpt_path={a}"]
    with pytest.raises(UserError, match="compare_to=.*40-px faces.*48-px faces.*same classes and size"):
        evaluate(make_cfg(tmp_path, [*base, f"compare_to={small}"], config_name="eval"))
    with pytest.raises(UserError, match="'nope' is neither a model file nor a shipped model"):
        evaluate(make_cfg(tmp_path, [*base, "compare_to=nope"], config_name="eval"))
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"not a checkpoint")
    scored = []  # a damaged second model is refused before the first is scored (ten-crop on FER2013: minutes)
    monkeypatch.setattr("lightning.Trainer.test", lambda *a, **k: scored.append(1))
    with pytest.raises(UserError, match="damaged.ckpt is not a PyTorch checkpoint"):
        evaluate(make_cfg(tmp_path, [*base, f"compare_to={damaged}"], config_name="eval"))
    assert not scored


def test_compare_tta_compares_one_model_under_two_test_time_augmentations(folder_data, tmp_path, monkeypatch):
    """``compare_tta`` alone: the same model with another TTA on the same faces (is ten-crop's gain over flip real?);
    with ``compare_to``, the other model with that TTA; equal to ``tta`` (or unset) without ``compare_to``: no test."""
    from emotion.models import tta

    modes, views = [], tta.views
    monkeypatch.setattr(tta, "views", lambda x, mode: modes.append(mode) or views(x, mode))
    a, b = random_model_file(tmp_path, 0), random_model_file(tmp_path, 1)
    base = [f"data.root={folder_data}", f"ckpt_path={a}"]

    def run(*overrides):
        modes.clear()
        return evaluate(make_cfg(tmp_path, [*base, *overrides], config_name="eval"))

    flip = run("tta=flip")
    assert "compared_to" not in flip and set(modes) == {"flip"}
    assert "compared_to" not in run("tta=flip", "compare_tta=flip")
    tencrop = run("tta=tencrop", "compare_tta=flip")
    assert modes[0] == "tencrop" and modes[-1] == "flip"  # this model with ten-crop, then the same with flip
    c = tencrop["compared_to"]
    assert (c["model"], c["tta"], c["n_images"]) == (a, "flip", 14)
    assert c["accuracy"] == pytest.approx(tencrop["accuracy"])
    assert c["other_accuracy"] == pytest.approx(flip["accuracy"])
    other = run("tta=none", f"compare_to={b}", "compare_tta=tencrop")
    assert (other["compared_to"]["model"], other["compared_to"]["tta"]) == (b, "tencrop")
    assert modes[0] == "none" and modes[-1] == "tencrop"
    with pytest.raises(UserError, match="compare_tta must be one of none, flip, tencrop, got 'fivecrop'"):
        run("compare_tta=fivecrop")
