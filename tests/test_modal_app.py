"""modal_app without the cloud: import offline, inspect the functions, run the bodies locally on temp 'Volumes'."""

import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY

modal = pytest.importorskip("modal")
import modal_app  # noqa: E402


class FakeVolume:
    def __init__(self):
        self.commits = 0

    def commit(self):
        self.commits += 1


def test_import_makes_no_network_call():
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network call at import')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
        "import modal_app\nprint('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
    assert socket.socket.connect is not None


def test_train_function_is_configured_for_a_gpu_with_volumes_retries_and_timeout():
    spec = modal_app.train._spec_
    assert spec.gpus == "A100"
    assert set(spec.volumes) == {"/data", "/runs"}
    opts = modal_app.FUNCTION_OPTIONS
    assert opts["timeout"] >= 6 * 3600
    assert opts["retries"].max_retries >= 1
    assert opts["single_use_containers"] is True
    assert modal_app.tensorboard._spec_.volumes.keys() == {"/runs"}


def test_run_names_are_stable_so_reruns_resume():
    a = modal_app.run_name_for(["experiment=baseline", "trainer.max_epochs=3"])
    assert a == modal_app.run_name_for(["trainer.max_epochs=3", "experiment=baseline"])
    assert a.startswith("baseline-") and a != modal_app.run_name_for(["experiment=baseline"])
    assert modal_app.run_name_for(["run_name=mine", "experiment=demo"]) == "mine"


def test_train_job_writes_checkpoints_commits_and_resumes(tmp_path):
    volume = FakeVolume()
    # no LR schedule: a one-cycle schedule cannot be stretched to more epochs on resume
    tiny = [*TINY, f"paths.root_dir={tmp_path}", "run_name=resume-me", "logger=csv", "model.scheduler=null"]
    runs = tmp_path / "runs"
    first = modal_app.train_job(tiny, runs_dir=str(runs), data_dir=str(tmp_path), volume=volume, default_overrides=())
    assert (runs / "train" / "runs" / "resume-me" / "checkpoints" / "last.ckpt").is_file()
    assert volume.commits >= 2  # after the epoch, at fit end (and once more at the very end)
    assert [h["epoch"] for h in first["history"]] == [1]

    second = modal_app.train_job(
        [*tiny, "trainer.max_epochs=2"],
        runs_dir=str(runs),
        data_dir=str(tmp_path),
        volume=volume,
        default_overrides=(),
    )
    assert [h["epoch"] for h in second["history"]] == [1, 2]  # continued, not restarted
    assert second["history"][0] == first["history"][0]
    assert second["global_step"] == 2 * first["global_step"]


def test_sweep_fans_out_and_ranks_best_first(tmp_path):
    calls = []

    def local_launch(args):
        out = []
        for (overrides,) in args:
            calls.append(overrides)
            if "model.optimizer.lr=bad" in overrides:
                out.append(RuntimeError("diverged"))
                continue
            lr = float(overrides[-1].split("=")[1])
            out.append({"metrics": {"val/acc": lr * 100}, "run_dir": str(tmp_path / str(lr))})
        return out

    results = modal_app.run_sweep(["experiment=demo", "model.optimizer.lr=0.001,0.003,bad"], local_launch)
    assert len(calls) == 3
    assert [r["metric"] for r in results] == [0.3, 0.1, None]
    assert results[-1]["status"].startswith("failed")
    table = modal_app.sweep_table(results)
    assert table.splitlines()[2].startswith("| 1 | experiment=demo model.optimizer.lr=0.003 | 0.3000 | ok |")


@pytest.mark.slow  # the fan-out logic is covered above; this adds two real (tiny) trainings
def test_sweep_runs_real_local_trainings(tmp_path):
    base = [*TINY, f"paths.root_dir={tmp_path}", "logger=csv", "callbacks=none"]
    base = [o for o in base if not o.startswith("~")]

    def local_launch(args):
        return [
            modal_app.train_job(
                [*base, *o], runs_dir=str(tmp_path / "runs"), data_dir=str(tmp_path), default_overrides=()
            )
            for (o,) in args
        ]

    results = modal_app.run_sweep(["model.optimizer.lr=1e-3,3e-3"], local_launch)
    assert len({r["run_dir"] for r in results}) == 2  # each run in its own directory
    assert all(r["status"] == "ok" and 0 <= r["metric"] <= 1 for r in results)
    assert results[0]["metric"] >= results[1]["metric"]
    assert json.loads((tmp_path / "runs" / "train" / "runs").iterdir().__next__().joinpath("metrics.json").read_text())


def test_modal_run_offline_fails_with_modals_own_message(tmp_path):
    modal_cli = [sys.executable, "-m", "modal", "run", "modal_app.py", "experiment=demo"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODAL_TOKEN_ID": "", "MODAL_TOKEN_SECRET": ""}
    res = subprocess.run(modal_cli, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "Token missing" in out and "Could not authenticate client" in out  # Modal's own message, unmasked
    assert "multiple possible entrypoints" not in out  # `modal run modal_app.py` needs no ::function
