"""model.distill.reuse_outputs: the teacher's outputs on training batches kept by content, read back later."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from emotion.errors import UserError
from emotion.models.checkpoint import save_safetensors
from emotion.models.distill import Distillation
from emotion.models.emotion_cnn import EmotionCNN
from emotion.models.teacher_outputs import TeacherOutputs, store_path
from tests.conftest import SYNTHETIC_12, fit_briefly, make_cfg


def counting(fn, calls: list):
    return lambda x: calls.append(len(x)) or fn(x)


def test_the_store_gives_back_exactly_what_the_teacher_gave_and_keeps_it_across_runs(tmp_path):
    torch.manual_seed(0)
    net = EmotionCNN().eval()

    def teacher(v: torch.Tensor) -> torch.Tensor:  # as a teacher returns logits in bf16 training
        return net(v).bfloat16()

    x = torch.rand(3, 1, 48, 48)
    calls: list[int] = []
    store = TeacherOutputs(tmp_path / "t.sqlite")
    with torch.no_grad():
        first = store(counting(teacher, calls), x)
        again = store(counting(teacher, calls), x)
        other = store(counting(teacher, calls), x.flip(3))  # another input: computed
    assert calls == [3, 3] and first.dtype == torch.bfloat16
    assert again.dtype == first.dtype and torch.equal(again, first)
    assert not torch.equal(other, first)
    assert (store.read, store.computed) == (1, 2)
    store.close()
    reopened = TeacherOutputs(tmp_path / "t.sqlite")  # a later run
    assert torch.equal(reopened(counting(teacher, calls), x), first) and calls == [3, 3]
    reopened.close()
    # the store's file names the teacher's content, the precision and the device type
    files = (str(save_safetensors(net, tmp_path / "a.safetensors")),)
    torch.manual_seed(1)
    other_files = (str(save_safetensors(EmotionCNN().eval(), tmp_path / "b.safetensors")),)
    paths = {
        store_path(tmp_path, files, "bf16-mixed", "cpu"),
        store_path(tmp_path, other_files, "bf16-mixed", "cpu"),
        store_path(tmp_path, files, "32-true", "cpu"),
        store_path(tmp_path, files, "bf16-mixed", "cuda"),
    }
    assert len(paths) == 4 and store_path(tmp_path, files, "bf16-mixed", "cpu").parent == tmp_path


def fit(tmp_path: Path, overrides: list[str], steps: int = 3) -> tuple[torch.Tensor, dict]:
    return fit_briefly(make_cfg(tmp_path, [*SYNTHETIC_12, f"paths.cache_dir={tmp_path / 'cache'}", *overrides]), steps)


def test_a_later_run_on_the_same_batches_reads_the_outputs_and_trains_exactly_the_same(tmp_path, monkeypatch):
    torch.manual_seed(3)
    teacher = str(save_safetensors(EmotionCNN().eval(), tmp_path / "teacher.safetensors"))
    calls: list[int] = []
    real = TeacherOutputs.__call__
    monkeypatch.setattr(TeacherOutputs, "__call__", lambda self, t, x: real(self, counting(t, calls), x))
    distill = [f"model.distill.teacher={teacher}"]
    plain, _ = fit(tmp_path, distill)
    first, metrics = fit(tmp_path, [*distill, "model.distill.reuse_outputs=true"])
    assert len(calls) == 3 and metrics["train/teacher_reused"] == 0.0
    assert torch.equal(first, plain)  # keeping the outputs changes nothing
    assert len(list((tmp_path / "cache").glob("teacher-outputs-*.sqlite"))) == 1
    second, metrics = fit(tmp_path, [*distill, "model.distill.reuse_outputs=true"])
    assert len(calls) == 3 and metrics["train/teacher_reused"] == 1.0  # every batch read, the teacher never ran
    assert torch.equal(second, plain)
    # an ablation of the loss sees the same batches: it reads them, and the knob it changes moves the weights
    ablation, metrics = fit(tmp_path, [*distill, "model.distill.reuse_outputs=true", "model.distill.alpha=0.9"])
    assert len(calls) == 3 and metrics["train/teacher_reused"] == 1.0 and not torch.equal(ablation, plain)
    # other inputs (another augmentation) find nothing and run the teacher
    fit(tmp_path, [*distill, "model.distill.reuse_outputs=true", "data.augment.translate=0.2"])
    assert len(calls) == 6


def test_reuse_outputs_needs_a_teacher_a_cache_folder_batches_and_one_process(tmp_path, monkeypatch):
    torch.manual_seed(3)
    teacher = str(save_safetensors(EmotionCNN().eval(), tmp_path / "teacher.safetensors"))
    with pytest.raises(UserError, match="model.distill.reuse_outputs=true needs a teacher"):
        Distillation(reuse_outputs=True)
    with pytest.raises(UserError, match="set model.distill.reuse_outputs=false"):
        Distillation(teacher=teacher, precompute=True, reuse_outputs=True)
    with pytest.raises(UserError, match=r"has none; set paths.cache_dir \(data.cache_dir\)"):
        fit(tmp_path, [f"model.distill.teacher={teacher}", "model.distill.reuse_outputs=true", "data.cache_dir=null"])
    monkeypatch.setattr(L.Trainer, "world_size", property(lambda self: 2))  # as under DDP on two devices
    with pytest.raises(UserError, match="keeps one store for one process; this run has 2"):
        fit(tmp_path, [f"model.distill.teacher={teacher}", "model.distill.reuse_outputs=true"])
