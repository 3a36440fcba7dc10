"""callbacks=ema: the moving average of the weights is what is validated, checkpointed, tested and resumed."""

import json

import hydra
import pytest
import torch
import torch.nn.functional as F

from emotion.models.checkpoint import load_net
from emotion.train import train
from tests.conftest import TINY, make_cfg

EMA = [*TINY, "callbacks=ema", "trainer.max_epochs=2"]


def loss_on_test(net, cfg) -> float:
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("test")
    with torch.no_grad():
        losses = [F.cross_entropy(net(x), y, reduction="sum") for x, y in dm.test_dataloader()]
    return float(sum(losses) / len(dm.arrays("test")[1]))


def test_the_average_is_validated_checkpointed_and_tested(tmp_path):
    cfg = make_cfg(tmp_path, [*EMA, "callbacks.ema.decay=0.9", "data.synthesize.n_train=40", "model.optimizer.lr=3e-2"])
    metrics = train(cfg)
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ckpt = torch.load(run["best_checkpoint"], map_location="cpu", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys() and all(k.startswith("net.") for k in averaged)
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)  # it really averaged

    ema_net = load_net(run["best_checkpoint"])  # what exports and every tool read: the average
    raw_net = load_net(run["best_checkpoint"])
    raw_net.load_state_dict({k.removeprefix("net."): v for k, v in raw.items()})
    ema_loss, raw_loss = loss_on_test(ema_net, cfg), loss_on_test(raw_net, cfg)
    assert abs(ema_loss - raw_loss) > 1e-3
    assert metrics["test/loss"] == pytest.approx(ema_loss, abs=1e-5)  # the final test scored the averaged weights
    best = max(run["history"], key=lambda h: h["val/acc"])
    assert metrics["val/acc"] == pytest.approx(best["val/acc"])  # and it is the average that validation picked


def test_decay_moves_the_averaged_weights(tmp_path):
    weights = []
    for decay in (0.5, 0.9):
        out = tmp_path / str(decay)
        train(make_cfg(out, [*EMA, f"callbacks.ema.decay={decay}"]))
        ckpt = torch.load(out / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        weights.append(ckpt["state_dict"])
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.slow  # two trainings (test_the_average_is_validated_checkpointed_and_tested guards the average)
def test_a_resumed_run_keeps_its_average(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run = [*EMA, "model.scheduler=null"]  # a constant learning rate: stopping after epoch 1 is a clean interruption
    train(make_cfg(straight, run))
    train(make_cfg(resumed, [*run, "trainer.max_epochs=1"]))
    train(make_cfg(resumed, [*run, "ckpt_path=last"]))
    a, b = (
        torch.load(d / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        for d in (straight, resumed)
    )
    for key in ("state_dict", "current_model_state"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def _net(layers: int) -> torch.nn.Module:
    return torch.nn.Sequential(*[m for _ in range(layers) for m in (torch.nn.Linear(6, 6), torch.nn.BatchNorm1d(6))])


def _train_a_little(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    net.train()(torch.randn(8, 6, generator=g))  # moves the running statistics and the counters


def test_foreach_ema_is_lightnings_average_with_counters_copied():
    from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

    from emotion.training.callbacks import ForeachEMA

    net = _net(3)
    ours, generic = ForeachEMA(net, 0.9), AveragedModel(net, avg_fn=get_ema_avg_fn(0.9), use_buffers=True)
    for step in range(5):
        _train_a_little(net, step)
        ours.update_parameters(net)
        generic.update_parameters(net)
    for (name, a), b, now in zip(
        ours.module.state_dict().items(), generic.module.state_dict().values(), net.state_dict().values()
    ):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, msg=name)
            assert not torch.allclose(a, now), name  # an average, not the last weights
        else:
            assert torch.equal(a, now), name  # batch norm's counters follow the model
    assert int(ours.n_averaged) == 5


def test_a_loaded_foreach_ema_goes_on_averaging():
    from emotion.training.callbacks import ForeachEMA

    net = _net(2)
    first = ForeachEMA(net, 0.5)
    first.update_parameters(net)
    resumed = ForeachEMA(_net(2), 0.5)
    resumed.load_state_dict(first.state_dict())
    before = [p.detach().clone() for p in resumed.module.parameters()]
    _train_a_little(net, 1)
    resumed.update_parameters(net)
    for old, new, cur in zip(before, resumed.module.parameters(), net.parameters()):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * cur)  # blended, not restarted from the weights


def _dispatches(update, net) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        update(net)
    return sum(
        1
        for e in prof.events()
        if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )


def test_the_foreach_update_costs_the_same_dispatches_at_any_depth():
    """The point of ForeachEMA: a GPU step of these networks is host-bound, and torch's generic update dispatches
    ~4 ops per tensor (here it grows with depth; ours does not)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

    from emotion.training.callbacks import ForeachEMA

    counts = {}
    for layers in (2, 10):
        net = _net(layers)
        ours, generic = ForeachEMA(net, 0.9), AveragedModel(net, avg_fn=get_ema_avg_fn(0.9), use_buffers=True)
        for avg in (ours, generic):
            avg.update_parameters(net)  # the first update copies
        counts[layers] = (_dispatches(ours.update_parameters, net), _dispatches(generic.update_parameters, net))
    assert counts[2][0] == counts[10][0] < counts[2][1] < counts[10][1], counts
