"""A run killed with SIGKILL mid-epoch and resumed with ckpt_path=last ends exactly like an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT
from tests.modal_harness import TIMING_KEYS

RUN = [
    "experiment=demo",
    "data.synthesize.n_train=40",
    "data.synthesize.n_val=4",
    "data.synthesize.n_test=4",
    "data.batch_size=16",
    "trainer.max_epochs=4",
    "callbacks.progress_bar.log_refresh_rate=1000",
    "~callbacks.model_summary",
    "logger=csv",
]


def train_cmd(root, run_name, *extra):
    return [sys.executable, "-m", "emotion.train", *RUN, f"paths.root_dir={root}", f"run_name={run_name}", *extra]


def final_state(root, run_name):
    run = root / "logs" / "train" / "runs" / run_name
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"], json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    subprocess.run(train_cmd(tmp_path, "straight"), cwd=ROOT, check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(
        train_cmd(tmp_path, "killed"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    history = tmp_path / "logs" / "train" / "runs" / "killed" / "history.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(json.loads(history.read_text() or "[]")) >= 2:
            time.sleep(0.5)  # into epoch 3
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (history.parent / "metrics.json").exists()  # really killed, before the end

    subprocess.run(
        train_cmd(tmp_path, "killed", "ckpt_path=last"), cwd=ROOT, check=True, capture_output=True, timeout=600
    )
    straight_w, straight_m = final_state(tmp_path, "straight")
    resumed_w, resumed_m = final_state(tmp_path, "killed")
    assert straight_w.keys() == resumed_w.keys()
    for k in straight_w:
        assert torch.equal(straight_w[k], resumed_w[k]), k
    assert resumed_m["metrics"] == straight_m["metrics"]
    strip = [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in straight_m["history"]]
    assert [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in resumed_m["history"]] == strip


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous last.ckpt intact and no temporary file behind."""
    from emotion.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, target)

    real_save = torch.save

    def crash_halfway(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 partial bytes of a checkpoint")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, target)
    monkeypatch.setattr(torch, "save", real_save)

    kept = torch.load(target, weights_only=True)
    assert kept["epoch"] == 1 and torch.equal(kept["w"], torch.ones(3))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    io.save_checkpoint({"epoch": 3, "w": torch.zeros(3)}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 3


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp"])
def test_every_trainer_config_saves_atomically(tmp_path, trainer):
    import hydra

    from emotion.training.checkpoint_io import AtomicCheckpointIO
    from tests.conftest import make_cfg

    cpu = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"]
    cfg = make_cfg(tmp_path, [f"trainer={trainer}", *cpu])
    assert cfg.trainer.plugins[0]["_target_"] == "emotion.training.checkpoint_io.AtomicCheckpointIO"
    built = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO)
