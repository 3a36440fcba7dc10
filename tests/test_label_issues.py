"""Label issues by confident learning: folds that partition every class, out-of-fold predictions that come from the
one model that did not see a face, cleanlab's verdict on planted label errors, and the command end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion.data.synthetic import write_dataset
from emotion.errors import UserError
from emotion.evaluation.label_issues import find_issues, issue_report, out_of_fold_probs, stratified_folds
from emotion.labels import FER2013_CLASSES
from emotion.models.base import EmotionNet
from emotion.models.checkpoint import save_safetensors
from emotion.models.emotion_cnn import EmotionCNN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "tools"))
import label_issues as tool  # noqa: E402


class Constant(EmotionNet):
    """Says class ``c`` for every face: shows which model predicted which face."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.num_classes)
        out[:, self.c] = 4.0
        return out


def test_folds_partition_the_faces_and_split_every_class_evenly() -> None:
    labels = np.repeat(np.arange(7), [40, 5, 33, 71, 2, 18, 26])
    folds = stratified_folds(labels, 4, seed=0)
    joined = np.concatenate(folds)
    assert sorted(joined.tolist()) == list(range(len(labels)))  # every face once
    for c in range(7):
        per_fold = [int((labels[f] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (c, per_fold)
    assert max(map(len, folds)) - min(map(len, folds)) <= 1  # small classes do not all land in fold 0
    again = stratified_folds(labels, 4, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    other = stratified_folds(labels, 4, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def test_folds_refuse_k_below_two_and_more_folds_than_faces() -> None:
    with pytest.raises(UserError, match="k must be >= 2"):
        stratified_folds(np.zeros(10, np.int64), 1, 0)
    with pytest.raises(UserError, match="3 faces cannot be split into 4 folds"):
        stratified_folds(np.zeros(3, np.int64), 4, 0)


def test_each_face_is_predicted_by_the_model_that_did_not_see_it() -> None:
    images = np.random.default_rng(0).integers(0, 255, (30, 48, 48), dtype=np.uint8)
    folds = stratified_folds(np.arange(30) % 3, 3, seed=0)
    probs = out_of_fold_probs([Constant(0), Constant(3), Constant(5)], folds, images, tta="flip")
    assert probs.shape == (30, 7)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    for fold, c in zip(folds, (0, 3, 5)):
        assert (probs[fold].argmax(1) == c).all()


def test_out_of_fold_needs_one_model_per_fold_and_folds_that_cover_once() -> None:
    images = np.zeros((6, 48, 48), np.uint8)
    with pytest.raises(UserError, match="2 models for 3 folds"):
        out_of_fold_probs([Constant(0), Constant(1)], [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])], images)
    with pytest.raises(UserError, match="cover 4 of 6 faces"):
        out_of_fold_probs([Constant(0), Constant(1)], [np.array([0, 1]), np.array([1, 2, 3])], images)


def test_find_issues_flags_the_planted_label_errors_most_doubtful_first() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 7, 700)
    probs = np.full((700, 7), 0.02, np.float32)
    probs[np.arange(700), truth] = 0.88
    labels = truth.copy()
    planted = rng.choice(700, 35, replace=False)
    labels[planted] = (truth[planted] + 1) % 7  # a wrong label the models disagree with
    worst = planted[0]  # the surest disagreement: the given label at 0.001 instead of 0.02
    probs[worst, labels[worst]] = 0.001
    probs[worst, truth[worst]] += 0.019
    issues = find_issues(labels, probs)
    assert set(issues.tolist()) == set(planted.tolist())
    assert issues[0] == worst
    conf = probs[issues, labels[issues]]
    assert (np.diff(conf) >= 0).all()  # ranked by the probability of the given label, lowest first
    report = issue_report(labels, probs, issues, FER2013_CLASSES)
    assert report["flagged"] == 35 and report["faces"] == 700
    assert sum(r["flagged"] for r in report["per_class"].values()) == 35
    assert report["out_of_fold_accuracy"] == pytest.approx(665 / 700)
    c = int(labels[worst])
    assert report["per_class"][FER2013_CLASSES[c]]["models_prefer"][FER2013_CLASSES[(c - 1) % 7]] >= 1


def test_frac_noise_keeps_the_most_doubtful_part_of_the_verdict() -> None:
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(7), 100)
    probs = np.full((700, 7), 0.02, np.float32)
    probs[np.arange(700), truth] = 0.88
    labels = truth.copy()
    planted = rng.choice(700, 70, replace=False)
    labels[planted] = (truth[planted] + 1) % 7
    probs[planted, labels[planted]] = rng.uniform(0.001, 0.019, 70)  # how sure the models are that it is wrong varies
    probs /= probs.sum(1, keepdims=True)
    every = find_issues(labels, probs)
    half = find_issues(labels, probs, frac_noise=0.5)
    assert set(every.tolist()) == set(planted.tolist())
    assert 25 <= len(half) <= 45 and set(half.tolist()) < set(every.tolist())
    with pytest.raises(UserError, match=r"frac_noise must be in \(0, 1\], got 0"):
        find_issues(labels, probs, frac_noise=0)


def test_the_command_writes_folds_then_a_data_exclude_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_dataset(tmp_path / "fer", n_train=8, n_val=2, n_test=2, seed=1)
    folds = tmp_path / "folds"
    tool.main(["folds", "--data", str(root), "--k", "2", "--out", str(folds)])
    listed = [json.loads((folds / f"fold{i}.json").read_text())["exclude"] for i in (0, 1)]
    assert len(listed[0]) + len(listed[1]) == 56 and not set(listed[0]) & set(listed[1])
    models = []
    for i in (0, 1):
        torch.manual_seed(i)
        models.append(str(save_safetensors(EmotionCNN().eval(), tmp_path / f"m{i}.safetensors")))
    tool.main(["find", "--data", str(root), "--folds", str(folds), *models, "--tta", "none"])
    out = json.loads((folds / "label_issues.json").read_text())
    assert set(out["exclude"]) <= set(listed[0]) | set(listed[1])
    assert out["faces"] == 56 and out["flagged"] == len(out["exclude"])
    with np.load(folds / "out_of_fold.npz") as f:
        assert f["probs"].shape == (56, 7) and sorted(f["sources"].tolist()) == sorted(listed[0] + listed[1])
    assert "out-of-fold accuracy" in capsys.readouterr().out
    # the same verdict from the saved predictions, without the models
    again = tmp_path / "again.json"
    tool.main(["find", "--folds", str(folds), "--probs", str(folds / "out_of_fold.npz"), "--out", str(again)])
    redo = json.loads(again.read_text())
    assert redo["exclude"] == out["exclude"] and redo["tta"] == "none" and redo["per_class"] == out["per_class"]


def test_the_command_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_dataset(tmp_path / "fer", n_train=2, n_val=1, n_test=1, seed=1)
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(SystemExit) as exc:
        tool.main(["find", "--data", str(root), "--folds", str(empty), "emotion_cnn"])
    assert exc.value.code == 2
    assert "holds no fold<i>.json files; make them with the `folds` command" in capsys.readouterr().err
    (empty / "fold0.json").write_text(json.dumps({"exclude": ["train/happy/not_here.png"]}))
    with pytest.raises(SystemExit):
        tool.main(["find", "--data", str(root), "--folds", str(empty), "emotion_cnn"])
    assert "1 faces are not training faces of --data, e.g. train/happy/not_here.png" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["find", "--folds", str(empty), "--probs", str(tmp_path / "p.npz"), "emotion_cnn"])
    assert "give either the fold models or --probs" in capsys.readouterr().err
    np.savez(tmp_path / "old.npz", sources=np.array(["a"]), labels=np.zeros(1), probs=np.ones((1, 7)) / 7)
    with pytest.raises(SystemExit):
        tool.main(["find", "--folds", str(empty), "--probs", str(tmp_path / "old.npz")])
    assert "old.npz: no class_names, tta; give an out_of_fold.npz of `find`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["find", "--folds", str(empty)])
    assert "give one model per fold (in fold order), or --probs" in capsys.readouterr().err
