"""model.distill.fresh_views: a distilling run is not shown the augmented views its teacher trained on."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from emotion.errors import UserError
from emotion.models.checkpoint import save_safetensors
from emotion.models.emotion_cnn import EmotionCNN
from emotion.models.module import VIEWS_STREAM_KEY, EmotionModule
from tests.conftest import SYNTHETIC_12, fit_briefly, make_cfg

SMALL = [*SYNTHETIC_12, "seed=5"]


def first_batch(
    tmp_path: Path, monkeypatch, overrides: list[str], base: list[str] = SMALL
) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmented faces and labels of a run's first training step."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = EmotionModule.training_step

    def recording(self, batch, batch_idx):
        seen.append((batch[0].detach().clone(), batch[1].clone()))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(EmotionModule, "training_step", recording)
    fit_briefly(make_cfg(tmp_path, [*base, *overrides]), steps=1)
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
    torch.manual_seed(0)
    teacher = str(save_safetensors(EmotionCNN().eval(), tmp_path / "teacher.safetensors"))

    def fit(overrides: list[str], steps: int, ckpt_path: Path | None = None) -> L.Trainer:
        cfg = make_cfg(tmp_path, [*SMALL, f"model.distill.teacher={teacher}", *overrides])
        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,  # the test saves its own
            enable_progress_bar=False,
            default_root_dir=tmp_path,
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


def test_the_teacher_views_tool_scores_a_model_on_a_runs_own_views_fresh_ones_and_none(
    tmp_path, folder_data, capsys, monkeypatch
):
    """experiments/tools/teacher_views.py orders and seeds its batches with the training sampler: the first batch it
    scores as "the stream's" is the very one a run with that seed trains on first."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "tools"))
    import teacher_views

    data = ["experiment=recipe", f"data.root={folder_data}", f"data.cache_dir={tmp_path / 'cache'}"]
    run = [*data, "model.distill.teacher=null", "model.distill.drop_labels_below=0", "model.channels_last=false"]
    run_x, _ = first_batch(tmp_path, monkeypatch, run, base=["seed=5"])
    torch.manual_seed(0)
    model = str(save_safetensors(EmotionCNN().eval(), tmp_path / "m.safetensors"))
    shown: list[torch.Tensor] = []
    forward = EmotionCNN.forward
    monkeypatch.setattr(EmotionCNN, "forward", lambda self, x: shown.append(x.detach().clone()) or forward(self, x))
    argv = [model, "--seed", "5", "--epochs", "0,1", "--batches", "1", "--data", str(folder_data), "--override", *data]
    teacher_views.main(argv)
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(model)]
    assert [(r[1], r[2]) for r in rows] == [(e, v) for e in "01" for v in ("the", "fresh", "unaugmented")]
    assert all(0 <= float(v) <= 1 for r in rows for v in r[-3:-1])
    assert len(shown) == 6 and torch.equal(shown[0], run_x)  # the run's own first batch, as it trained on it
    assert not torch.allclose(shown[1], shown[0], atol=0.05)  # fresh views of the same faces
