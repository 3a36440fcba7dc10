"""Sharpness-aware minimisation (model.sam_rho): the update the paper defines, the scheduler and checkpoint plumbing,
and the knob moving a real training while the train metrics still count each batch once."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from emotion.models.sam import SAM
from tests.test_knobs import weights_after_steps


def loss_of(w: torch.Tensor) -> torch.Tensor:
    return (w**4).sum() + (w[0] * w[1]) ** 2  # curved, so the gradient at the perturbed point differs


def closure_for(w: torch.nn.Parameter, opt: torch.optim.Optimizer):
    def closure():
        opt.zero_grad()
        loss = loss_of(w)
        loss.backward()
        return loss

    return closure


def test_sam_steps_from_the_weights_with_the_gradient_at_the_perturbed_ones():
    start = torch.tensor([0.7, -0.4, 1.1])
    w = torch.nn.Parameter(start.clone())
    opt = SAM([w], functools.partial(torch.optim.SGD, lr=0.1), rho=0.05)
    opt.step(closure_for(w, opt))

    g = torch.func.grad(loss_of)(start)
    g_adv = torch.func.grad(loss_of)(start + 0.05 * g / g.norm())
    torch.testing.assert_close(w.detach(), start - 0.1 * g_adv)
    assert not torch.allclose(w.detach(), start - 0.1 * g)  # not the plain step


def test_rho_zero_is_the_base_optimizer():
    start = torch.tensor([0.7, -0.4, 1.1])
    w, v = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    sam = SAM([w], functools.partial(torch.optim.AdamW, lr=0.01), rho=0.0)
    plain = torch.optim.AdamW([v], lr=0.01)
    for _ in range(3):
        sam.step(closure_for(w, sam))
        plain.step(closure_for(v, plain))
    torch.testing.assert_close(w.detach(), v.detach())


def test_a_scheduler_drives_the_base_and_a_checkpoint_resumes_it():
    def make():
        w = torch.nn.Parameter(torch.tensor([0.7, -0.4, 1.1]))
        opt = SAM([w], functools.partial(torch.optim.AdamW, lr=0.01), rho=0.05)
        return w, opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=6)

    w, opt, sched = make()
    for _ in range(3):
        opt.step(closure_for(w, opt))
        sched.step()
    assert opt.base.param_groups[0]["lr"] == sched.get_last_lr()[0] != 0.01 / 25  # the schedule moved the base
    saved, saved_sched, saved_w = copy.deepcopy((opt.state_dict(), sched.state_dict(), w.detach()))  # live tensors
    for _ in range(3):
        opt.step(closure_for(w, opt))
        sched.step()

    w2, opt2, sched2 = make()
    with torch.no_grad():
        w2.copy_(saved_w)
    opt2.load_state_dict(saved)
    sched2.load_state_dict(saved_sched)
    for _ in range(3):
        opt2.step(closure_for(w2, opt2))
        sched2.step()
    torch.testing.assert_close(w2.detach(), w.detach())


def test_step_needs_the_closure_and_rho_its_range():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="closure"):
        SAM([w], functools.partial(torch.optim.SGD, lr=0.1)).step()
    with pytest.raises(ValueError, match="model.sam_rho"):
        SAM([w], functools.partial(torch.optim.SGD, lr=0.1), rho=-0.1)


def test_sam_rho_moves_a_training(tmp_path):
    plain = weights_after_steps(tmp_path, "best", [])
    assert torch.equal(plain, weights_after_steps(tmp_path, "best", ["model.sam_rho=0.0"]))
    assert not torch.equal(plain, weights_after_steps(tmp_path, "best", ["model.sam_rho=0.05"]))


def test_each_batch_is_counted_and_taught_once():
    """The second pass of a SAM step neither updates the train metrics nor runs the teacher again."""
    import lightning as L

    from emotion.models import EmotionCNN
    from emotion.models.module import EmotionModule

    model = EmotionModule(EmotionCNN(), optimizer=functools.partial(torch.optim.SGD, lr=0.01), sam_rho=0.05)
    teacher_calls = []
    teacher = EmotionCNN().eval()
    model._teacher = [lambda x: teacher_calls.append(len(x)) or teacher(x)]
    counted = []
    count = model.train_acc.forward
    model.train_acc.forward = lambda *a, **k: counted.append(1) or count(*a, **k)
    x = torch.randint(0, 256, (8, 1, 48, 48), dtype=torch.uint8)
    y = torch.randint(0, 7, (8,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=loader)
    assert teacher_calls == [4, 4]  # two steps, each teacher pass once
    assert len(counted) == 2  # two steps, each counted once in train/acc
