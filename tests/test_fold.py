"""Batch norm folded into the layer before it: the teacher's outputs unchanged, its batch norms gone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from emotion.models import EmotionCNN, EmotionVGG
from emotion.models.checkpoint import save_safetensors
from emotion.models.distill import Distillation
from emotion.models.fold import fold_batch_norm


def trained_like_vgg() -> EmotionVGG:
    """A small EmotionVGG whose batch norms hold statistics and affine weights far from their initial values (a
    fresh batch norm is nearly the identity, which would fold into nearly nothing)."""
    torch.manual_seed(0)
    net = EmotionVGG(widths=(8, 16, 32, 64))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def batch_norms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in net.modules())


def test_folding_keeps_the_outputs_and_removes_every_batch_norm():
    net = trained_like_vgg()
    kept = copy.deepcopy(net)
    assert batch_norms(net) == 9  # two per stage, one in the head
    assert fold_batch_norm(net) == 9 and batch_norms(net) == 0
    x = torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        before, after = kept(x), net(x)
        assert torch.allclose(after, before, atol=1e-4, rtol=1e-4)
        # the statistics mattered: ignoring them (a fresh batch norm) gives other outputs
        fresh = trained_like_vgg()
        for m in fresh.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.reset_parameters()
        assert not torch.allclose(fresh(x), before, atol=1e-2)
    assert fold_batch_norm(net) == 0  # folding twice changes nothing more


def test_folding_needs_eval_mode_and_leaves_a_network_without_batch_norm_alone():
    with pytest.raises(ValueError, match=r"eval mode \(call .eval\(\) first\)"):
        fold_batch_norm(EmotionVGG(widths=(8, 16, 32, 64)).train())
    cnn = EmotionCNN().eval()
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    assert fold_batch_norm(cnn) == 0
    assert all(torch.equal(v, state[k]) for k, v in cnn.state_dict().items())


def test_the_distillation_teacher_is_loaded_folded_with_the_same_probabilities(tmp_path):
    net = trained_like_vgg()
    files = [str(save_safetensors(net, tmp_path / "vgg.safetensors"))]
    torch.manual_seed(1)
    files.append(str(save_safetensors(EmotionCNN().eval(), tmp_path / "cnn.safetensors")))
    x = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    for teachers in (files[:1], files):
        teacher = Distillation(teacher=teachers).load_teacher(net.class_names)
        assert batch_norms(teacher) == 0 and not teacher.training
        assert not any(p.requires_grad for p in teacher.parameters())
        with torch.no_grad():
            if len(teachers) == 1:
                assert torch.allclose(teacher.probabilities(teacher(x)), net.probabilities(net(x)), atol=1e-5)
            else:  # the ensemble's members are folded too
                member = teacher.members[0]
                assert torch.allclose(member(x), net(x), atol=1e-4, rtol=1e-4)
