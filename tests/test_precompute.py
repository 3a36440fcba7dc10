"""model.distill.precompute: the teacher's targets computed once per training face, carried by the training batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from emotion.data.datamodule import FER2013DataModule
from emotion.errors import UserError
from emotion.models import distill
from emotion.models.checkpoint import save_safetensors
from emotion.models.emotion_cnn import EmotionCNN
from tests.conftest import make_cfg, weights_after_fit

SMALL = ["data=synthetic", "data.synthesize.n_train=6", "data.synthesize.n_val=2", "data.synthesize.n_test=2"]


def teacher_file(tmp_path: Path) -> str:
    torch.manual_seed(3)
    return str(save_safetensors(EmotionCNN().eval(), tmp_path / "teacher.safetensors"))


def test_stored_targets_are_the_teachers_probabilities_averaged_with_the_mirror_image(tmp_path):
    teacher = EmotionCNN().eval()
    faces = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    stored = distill.stored_targets(teacher, faces.numpy(), batch_size=2)  # batches of 2: one face left over
    x = faces.unsqueeze(1)
    with torch.no_grad():
        mean = (F.softmax(teacher(x), 1) + F.softmax(teacher(torch.flip(x, dims=[3])), 1)) / 2
        plain = F.log_softmax(teacher(x), 1)
    assert stored.shape == (5, 7) and stored.dtype == torch.float32
    assert torch.allclose(stored, mean.log(), atol=1e-5)
    assert not torch.allclose(stored, plain, atol=1e-3)  # the mirror image counts
    # at any temperature the distillation loss reads them as it reads a teacher's logits
    assert torch.allclose(F.softmax(stored / 4, 1), F.softmax(mean.log() / 4, 1), atol=1e-6)


def test_training_batches_carry_each_faces_stored_target_through_augmentation(folder_data):
    dm = FER2013DataModule(str(folder_data), batch_size=16, cache_dir=None, download=False)
    dm.setup()
    n = len(dm.arrays("train")[1])
    dm.train_targets = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 7).clone()  # target = face's index
    loader = dm.train_dataloader()
    idx, _ = next(iter(loader.sampler))
    x, y, seed, stored = next(iter(loader))
    assert torch.equal(stored[:, 0], idx.float()) and torch.equal(y, torch.from_numpy(dm.arrays("train")[1])[idx])
    assert len(dm.on_after_batch_transfer((x, y, seed, stored), 0)) == 3  # the seed dropped, the targets kept
    assert len(next(iter(dm.val_dataloader()))) == 2  # evaluation batches never carry any


def test_a_fit_trains_on_the_stored_targets_reads_them_back_from_the_cache_and_moves_the_weights(tmp_path, monkeypatch):
    teacher = teacher_file(tmp_path)
    cache = tmp_path / "cache"

    def fit(*overrides: str) -> torch.Tensor:
        cfg = [*SMALL, "data.batch_size=16", "model.channels_last=false", f"paths.cache_dir={cache}"]
        return weights_after_fit(make_cfg(tmp_path, [*cfg, f"model.distill.teacher={teacher}", *overrides]))

    live = fit()
    calls = []
    real = distill.stored_targets
    monkeypatch.setattr(distill, "stored_targets", lambda *a, **k: calls.append(1) or real(*a, **k))
    stored = fit("model.distill.precompute=true")
    assert calls == [1] and len(list(cache.glob("teacher-*.npy"))) == 1
    assert not torch.equal(stored, live)  # the targets no longer follow the augmentation: another training
    again = fit("model.distill.precompute=true")  # a resumed or repeated run: read from the cache
    assert calls == [1] and torch.equal(again, stored)


def test_precompute_needs_a_teacher_and_refuses_mixing(tmp_path):
    with pytest.raises(UserError, match="model.distill.precompute=true needs a teacher"):
        distill.Distillation(precompute=True)
    base = [*SMALL, "data.batch_size=16", "model.channels_last=false", f"paths.cache_dir={tmp_path / 'cache'}"]
    teacher = f"model.distill.teacher={teacher_file(tmp_path)}"
    mixing = [teacher, "model.distill.precompute=true", "data.mix.mixup_alpha=0.2"]
    with pytest.raises(UserError, match="with data.mix: a mixed face's target would be a blend"):
        weights_after_fit(make_cfg(tmp_path, [*base, *mixing]))
