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
