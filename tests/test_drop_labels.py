"""data.drop_labels: listed training faces stay in training without their hard label (the teacher alone teaches
them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion.data.datamodule import NO_LABEL, FER2013DataModule
from emotion.data.mix import BatchMix
from emotion.errors import DatasetError, UserError
from emotion.models.checkpoint import save_safetensors
from emotion.models.emotion_cnn import EmotionCNN
from emotion.models.module import EmotionModule
from tests.conftest import make_cfg, weights_after_fit


def verdict(path: Path, sources) -> Path:
    path.write_text(json.dumps({"exclude": sorted(str(s) for s in sources), "flagged": len(sources)}))
    return path


def setup(root: Path, **kw) -> FER2013DataModule:
    dm = FER2013DataModule(str(root), batch_size=256, cache_dir=None, download=False, augment=None, **kw)
    dm.setup()
    return dm


def test_listed_training_faces_lose_their_label_in_training_batches_only(folder_data, tmp_path):
    plain = setup(folder_data)
    train_sources = plain.raw.sources[plain.splits.train]
    listed = set(train_sources[::3].tolist())
    test_face = plain.raw.sources[plain.splits.test[0]]  # a listed evaluation face is never touched
    dm = setup(folder_data, drop_labels=str(verdict(tmp_path / "v.json", [*listed, test_face])))

    y = next(iter(dm.train_dataloader()))[1]  # one batch holds every training face (batch 256)
    order = next(iter(dm.train_dataloader().sampler))[0].numpy()
    sources, true = train_sources[order], plain.raw.labels[plain.splits.train][order]
    y = y.numpy()
    assert np.all(y[np.isin(sources, list(listed))] == NO_LABEL)
    assert np.array_equal(y[~np.isin(sources, list(listed))], true[~np.isin(sources, list(listed))])
    assert len(dm.labels_dropped) == len(listed)
    assert f"{len(listed)} training faces listed in" in dm.splits.protocol["labels_dropped"]
    # the faces and every other view of the data keep their labels
    assert np.array_equal(dm.splits.train, plain.splits.train)
    assert np.array_equal(dm.arrays("train")[1], plain.arrays("train")[1])
    assert np.array_equal(dm.class_counts(), plain.class_counts())
    for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.eval_dataloader("train")):
        assert (next(iter(loader))[1] >= 0).all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("[1, 2]", "not a JSON object with an exclude list"),
        ('{"flagged": 3}', 'no "exclude" list'),
        ('{"exclude": ["train/angry/nobody.png"]}', r"none of its 1 paths \(e.g. train/angry/nobody.png\) is a"),
    ],
)
def test_a_wrong_drop_labels_file_is_one_clear_error(folder_data, tmp_path, content, message):
    path = tmp_path / "v.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message) as err:
        setup(folder_data, drop_labels=str(path))
    assert f"data.drop_labels={path}" in str(err.value)


def test_drop_labels_is_refused_with_mixing_which_would_blend_a_missing_label(folder_data, tmp_path):
    plain = setup(folder_data)
    path = verdict(tmp_path / "v.json", plain.raw.sources[plain.splits.train][:2])
    with pytest.raises(DatasetError, match="a mixed face would blend a dropped label"):
        setup(folder_data, drop_labels=str(path), mix=BatchMix(mixup_alpha=0.2))
    setup(folder_data, drop_labels=str(path), mix=BatchMix(mixup_alpha=0.0))  # mixing off: accepted


def test_a_face_without_a_label_learns_from_the_teacher_alone(tmp_path):
    teacher = str(save_safetensors(EmotionCNN().eval(), tmp_path / "t.safetensors"))
    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (8, 1, 48, 48), dtype=torch.uint8), torch.randint(0, 7, (8,))
    unlabelled = torch.tensor([True, False] * 4)

    def step(labels: torch.Tensor) -> tuple[EmotionModule, torch.Tensor]:
        torch.manual_seed(1)
        module = EmotionModule(EmotionCNN(), distill={"teacher": teacher, "alpha": 0.5})
        module.on_fit_start()
        module.log = lambda *a, **k: None
        module.eval()  # dropout off: the checks below repeat the student's forward pass
        return module, module.training_step((x, labels), 0).detach()

    module, loss = step(torch.where(unlabelled, NO_LABEL, y))
    logits = module(x).detach()
    soft = module.distill.combine(torch.tensor(0.0), logits, module._teacher_logits)[0]
    each = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert loss == pytest.approx(float(0.5 * each[~unlabelled].sum() / 8 + soft), rel=1e-5)
    acc = module.train_acc  # training accuracy counts the labelled faces only
    assert int(acc.tp + acc.fn) == 4
    assert float(acc.compute()) == pytest.approx(float((logits.argmax(1) == y)[~unlabelled].float().mean()))
    _, every_label = step(y)
    assert loss != pytest.approx(float(every_label))
    _, none = step(torch.full_like(y, NO_LABEL))
    assert none == pytest.approx(float(soft), rel=1e-5)


def test_the_setting_moves_the_weights_and_needs_a_teacher(tmp_path):
    teacher = str(save_safetensors(EmotionCNN().eval(), tmp_path / "t.safetensors"))
    small = ["data=synthetic", "data.synthesize.n_train=6", "data.synthesize.n_val=2", "data.synthesize.n_test=2"]

    def fit(*overrides: str) -> torch.Tensor:
        return weights_after_fit(
            make_cfg(tmp_path, [*small, "data.batch_size=16", "model.channels_last=false", *overrides])
        )

    with_teacher = f"model.distill.teacher={teacher}"
    base = fit(with_teacher)
    dm = FER2013DataModule(str(tmp_path / "data" / "synthetic"), cache_dir=None, download=False)
    dm.setup()
    path = verdict(tmp_path / "v.json", dm.raw.sources[dm.splits.train][::2])
    assert not torch.equal(fit(with_teacher, f"data.drop_labels={path}"), base)
    with pytest.raises(UserError, match=r"data.drop_labels=.* leaves its faces only the teacher to learn from"):
        fit("model.distill.teacher=null", f"data.drop_labels={path}")
