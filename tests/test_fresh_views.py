"""model.distill.fresh_views: a distilling run is not shown the augmented views its teacher trained on."""

from __future__ import annotations

from pathlib import Path

import torch

from emotion.models.checkpoint import save_safetensors
from emotion.models.emotion_cnn import EmotionCNN
from emotion.models.module import EmotionModule
from tests.conftest import fit_briefly, make_cfg

SMALL = [
    "data=synthetic",
    "data.synthesize.n_train=12",
    "data.synthesize.n_val=2",
    "data.synthesize.n_test=2",
    "data.batch_size=4",
    "model.channels_last=false",
    "seed=5",
]


def first_batch(tmp_path: Path, monkeypatch, overrides: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmented faces and labels of a run's first training step."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = EmotionModule.training_step

    def recording(self, batch, batch_idx):
        seen.append((batch[0].detach().clone(), batch[1].clone()))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(EmotionModule, "training_step", recording)
    fit_briefly(make_cfg(tmp_path, [*SMALL, *overrides]), steps=1)
    return seen[0]


def test_a_student_with_its_teachers_seed_sees_the_same_faces_in_other_views(tmp_path, monkeypatch):
    torch.manual_seed(0)
    teacher = str(save_safetensors(EmotionCNN().eval(), tmp_path / "teacher.safetensors"))
    other = str(save_safetensors(EmotionCNN().eval(), tmp_path / "other.safetensors"))
    # what the teacher saw, had it been trained with this seed: the seed's own stream
    own_x, own_y = first_batch(tmp_path, monkeypatch, ["model.distill.teacher=null"])
    x, y = first_batch(tmp_path, monkeypatch, [f"model.distill.teacher={teacher}"])
    assert torch.equal(y, own_y)  # the same faces in the same order ...
    assert not torch.allclose(x, own_x, atol=0.05)  # ... in other views
    # another teacher: another stream; fresh_views=false: the seed's own stream, as runs before the knob
    x_other, _ = first_batch(tmp_path, monkeypatch, [f"model.distill.teacher={other}"])
    assert not torch.allclose(x_other, x, atol=0.05)
    old, _ = first_batch(tmp_path, monkeypatch, [f"model.distill.teacher={teacher}", "model.distill.fresh_views=false"])
    assert torch.equal(old, own_x)
    # the stream is a function of the teacher's content and the seed: a rerun sees the same views
    again, _ = first_batch(tmp_path, monkeypatch, [f"model.distill.teacher={teacher}"])
    assert torch.equal(again, x)


def test_a_run_resumes_only_with_the_views_it_started_with(tmp_path):
    """A checkpoint carries its views' stream; one written before the stream existed drew the seed's own."""
    import hydra
    import lightning as L
    import pytest

    from emotion.errors import UserError
    from emotion.models.module import VIEWS_STREAM_KEY

    torch.manual_seed(0)
    teacher = str(save_safetensors(EmotionCNN().eval(), tmp_path / "teacher.safetensors"))

    def fit(overrides: list[str], steps: int, ckpt_path: Path | None = None) -> L.Trainer:
        cfg = make_cfg(tmp_path, [*SMALL, f"model.distill.teacher={teacher}", *overrides])
        trainer = L.Trainer(
            accelerator="cpu", max_steps=steps, limit_val_batches=0, logger=False, enable_progress_bar=False
        )
        trainer.fit(hydra.utils.instantiate(cfg.model), hydra.utils.instantiate(cfg.data), ckpt_path=ckpt_path)
        return trainer

    old = tmp_path / "old.ckpt"
    fit(["model.distill.fresh_views=false"], 1).save_checkpoint(old)
    ckpt = torch.load(old, weights_only=True)
    assert ckpt[VIEWS_STREAM_KEY] == 0
    del ckpt[VIEWS_STREAM_KEY]  # as every checkpoint written before model.distill.fresh_views
    torch.save(ckpt, old)
    with pytest.raises(UserError, match=r"the seed's own stream .*this configuration from stream .*fresh_views=false"):
        fit([], 2, old)
    assert fit(["model.distill.fresh_views=false"], 2, old).global_step == 2
    new = tmp_path / "new.ckpt"
    fit([], 1).save_checkpoint(new)
    with pytest.raises(UserError, match=r"from stream [0-9a-f]{8}, this configuration from the seed's own .*=true"):
        fit(["model.distill.fresh_views=false"], 2, new)
    assert fit([], 2, new).global_step == 2
