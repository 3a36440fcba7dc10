"""modal_app without the cloud: import offline, inspect the functions, run the container body locally on temp
'Volumes', and check that nothing invalid ever reaches ``.remote()``."""

import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch

from tests.conftest import ROOT, TINY

modal = pytest.importorskip("modal")
import modal_app  # noqa: E402


class RecordingVolume:
    """Records, at every commit, the epoch of the run's last.ckpt as it is on disk at that moment."""

    def __init__(self, last_ckpt=None):
        self.last_ckpt = last_ckpt
        self.epochs: list[int | None] = []

    def commit(self):
        if self.last_ckpt is not None and self.last_ckpt.is_file():
            self.epochs.append(torch.load(self.last_ckpt, map_location="cpu", weights_only=True)["epoch"])
        else:
            self.epochs.append(None)


def test_import_makes_no_network_call_and_loads_no_training_stack():
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network call at import')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
        "import modal_app\n"
        "print(sorted(m for m in ('torch', 'lightning', 'hydra', 'emotion') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr[-2000:]
    assert socket.socket.connect is not None


def test_functions_are_configured_without_retries_and_tensorboard_has_its_own_small_image():
    spec = modal_app.train._spec_
    assert spec.gpus == "A100"
    assert set(spec.volumes) == {"/data", "/runs"}
    opts = modal_app.FUNCTION_OPTIONS
    assert opts["timeout"] >= 6 * 3600 and opts["single_use_containers"] is True
    assert "retries" not in opts  # a deterministic error must not be paid four times
    assert modal_app.tensorboard._spec_.volumes.keys() == {"/runs"}
    assert modal_app.tensorboard_image is not modal_app.train_image
    lock = (ROOT / ".ci" / "modal-requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in lock and any(line.startswith("lightning==") for line in lock)


def test_run_names_are_stable_so_reruns_resume():
    a = modal_app.run_name_for(["experiment=baseline", "trainer.max_epochs=3"])
    assert a == modal_app.run_name_for(["trainer.max_epochs=3", "experiment=baseline"])
    assert a.startswith("baseline-") and a != modal_app.run_name_for(["experiment=baseline"])
    assert modal_app.run_name_for(["run_name=mine", "experiment=demo"]) == "mine"


def test_gpus_option_asks_for_n_gpus_and_ddp():
    assert modal_app.split_gpus(["experiment=sota"]) == (1, ["experiment=sota"])
    n, overrides = modal_app.split_gpus(["gpus=4", "experiment=sota"])
    assert n == 4 and overrides == ["trainer=ddp", "experiment=sota", "trainer.devices=4"]
    assert modal_app.gpu_spec(4) == "A100:4"
    with pytest.raises(SystemExit, match="gpus=four"):
        modal_app.split_gpus(["gpus=four"])


class FakeFunction:
    def __init__(self):
        self.calls = []

    def remote(self, overrides):
        self.calls.append(overrides)
        return {"metrics": {"val/acc": 0.5}}


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("data.bach_size=8", "bach_size"),
        ("experiment=recipy", "recipy"),
        ("model.optimizer.lr=-1", "model.optimizer.lr must be >= 0.0"),
        ("+model.optimizer.betas=[2,0.9]", "Invalid beta parameter"),  # checked by building the optimizer
        ("trainer.max_epochs=abc", "whole number"),
        ("model.distill.teacher=/nowhere.ckpt", "neither a model file nor a shipped model"),
        ("model.label_smoothing=0.1", "it is now model.loss.label_smoothing: model.loss.label_smoothing=0.1"),
    ],
)
def test_a_bad_override_fails_locally_and_never_reaches_remote(monkeypatch, override, reason):
    fake = FakeFunction()
    monkeypatch.setattr(modal_app, "train", fake)
    with pytest.raises(SystemExit, match=reason):
        modal_app._train_and_wait(["experiment=recipe", override])
    assert fake.calls == []


def test_a_valid_command_passes_preflight_and_is_sent_once(monkeypatch, capsys):
    fake = FakeFunction()
    monkeypatch.setattr(modal_app, "train", fake)
    modal_app._train_and_wait(["experiment=recipe", "trainer.max_epochs=3", "model.distill.teacher=null"])
    assert len(fake.calls) == 1 and fake.calls[0][-1].startswith("run_name=recipe-")
    assert "modal volume get" in capsys.readouterr().out


def test_the_volume_is_committed_after_each_checkpoint_and_the_run_resumes(tmp_path):
    """The container body, run here: ``python -m emotion.train`` as a subprocess; every commit while it runs sees
    the newest epoch's last.ckpt; a second call with more epochs continues the same run."""
    tiny = [*TINY, f"paths.root_dir={tmp_path}", "run_name=resume-me", "logger=csv", "model.scheduler=null"]
    runs = tmp_path / "runs"
    last = runs / "train" / "runs" / "resume-me" / "checkpoints" / "last.ckpt"
    volume = RecordingVolume(last)
    job = dict(runs_dir=str(runs), data_dir=str(tmp_path), volume=volume, default_overrides=(), poll_s=0.05, cwd=ROOT)
    first = modal_app.train_job([*tiny, "trainer.max_epochs=2"], **job)
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    assert volume.epochs[:2] == [0, 1]  # one commit per epoch, each seeing that epoch's last.ckpt
    assert volume.epochs[-1] == 1  # and the final commit

    volume.epochs.clear()
    second = modal_app.train_job([*tiny, "trainer.max_epochs=3"], **job)
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3]  # continued, not restarted
    assert second["history"][:2] == first["history"]
    assert volume.epochs[0] == 2  # the resumed run's old checkpoint is not committed again as news


def test_a_failing_training_commits_what_it_wrote_and_raises(tmp_path):
    volume = RecordingVolume()
    with pytest.raises(RuntimeError, match="exited with status 1"):
        modal_app.train_job(
            [*TINY, f"paths.root_dir={tmp_path}", "model.optimizer.lr=-1"],
            runs_dir=str(tmp_path / "runs"),
            volume=volume,
            default_overrides=(),
            poll_s=0.05,
            cwd=ROOT,
        )
    assert volume.epochs == [None]


@pytest.mark.slow  # two processes (gloo) training the demo, then resuming: ~1 min
def test_ddp_launches_two_ranks_from_the_container_body_and_resumes(tmp_path, capfd):
    """Lightning's launcher re-runs `python -m emotion.train` for rank 1: only possible because the body runs the
    training as that module in a subprocess (inside a Modal container `__main__` is Modal's entrypoint)."""
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    tiny = [*TINY, *ddp, f"paths.root_dir={tmp_path}", "run_name=ddp", "logger=csv", "model.scheduler=null"]
    job = dict(runs_dir=str(tmp_path / "runs"), data_dir=str(tmp_path), default_overrides=(), poll_s=0.2, cwd=ROOT)
    first = modal_app.train_job(tiny, **job)
    out = capfd.readouterr()
    assert "MEMBER: 2/2" in out.out + out.err  # Lightning's "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"
    second = modal_app.train_job([*tiny, "trainer.max_epochs=2"], **job)
    assert [h["epoch"] for h in second["history"]] == [1, 2] and second["history"][0] == first["history"][0]


def test_sweep_grid_uses_hydras_own_parser():
    jobs = modal_app.expand_grid(["experiment=demo", "model.x=[1,2]", "a=1,2", "b=range(1,3)", "c=choice(p,q)"])
    assert len(jobs) == 8 and all("model.x=[1,2]" in job for job in jobs)  # a list is one value, not two jobs
    assert jobs[0] == ["experiment=demo", "model.x=[1,2]", "a=1", "b=1", "c=p"]
    with pytest.raises(SystemExit, match="interval"):
        modal_app.expand_grid(["a=interval(0,1)"])
    with pytest.raises(SystemExit, match="cannot parse"):
        modal_app.expand_grid(["a=[1,2"])


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


def test_tensorboard_reloads_the_volume_at_most_every_30_s_and_survives_open_files():
    class Volume:
        def __init__(self):
            self.reloads, self.fail_next = 0, True

        def reload(self):
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("there are open files")
            self.reloads += 1

    now = [1000.0]
    volume = Volume()
    reloader = modal_app.VolumeReloader(volume, every_s=30, clock=lambda: now[0])
    assert reloader.maybe_reload() is False  # open files: retried at the next request
    assert reloader.maybe_reload() is True and volume.reloads == 1
    now[0] += 10
    assert reloader.maybe_reload() is False and volume.reloads == 1
    now[0] += 25
    assert reloader.maybe_reload() is True and volume.reloads == 2


def test_upload_checks_the_path_first_and_copies_a_folder(tmp_path):
    class Batch:
        def __init__(self):
            self.puts = []

        def put_directory(self, src, dest):
            self.puts.append((src, dest))

    class Volume:
        def __init__(self):
            self.batch = Batch()

        @contextmanager
        def batch_upload(self, force=False):
            yield self.batch

    volume = Volume()
    with pytest.raises(SystemExit, match="nowhere does not exist"):
        modal_app.upload([str(tmp_path / "nowhere")], volume=volume)
    assert volume.batch.puts == []
    (tmp_path / "fer").mkdir()
    message = modal_app.upload([str(tmp_path / "fer")], volume=volume)
    assert volume.batch.puts == [(str(tmp_path / "fer"), "/fer2013")] and "data.root=/data/fer2013" in message


def test_modal_run_offline_fails_with_modals_own_message(tmp_path):
    modal_cli = [sys.executable, "-m", "modal", "run", "modal_app.py", "experiment=demo"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODAL_TOKEN_ID": "", "MODAL_TOKEN_SECRET": ""}
    res = subprocess.run(modal_cli, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "Token missing" in out and "Could not authenticate client" in out  # Modal's own message, unmasked
    assert "multiple possible entrypoints" not in out  # `modal run modal_app.py` needs no ::function


def test_plain_python_lists_the_sub_commands():
    res = subprocess.run(
        [sys.executable, "modal_app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0
    for command in ("[train] OVERRIDES", "launch OVERRIDES", "sweep OVERRIDES", "upload DIR", "modal deploy"):
        assert command in res.stdout
    res = subprocess.run([sys.executable, "modal_app.py"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "python modal_app.py upload DIR" in res.stderr


def test_upload_offline_is_one_clear_line(tmp_path):
    (tmp_path / "fer").mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODAL_TOKEN_ID": "", "MODAL_TOKEN_SECRET": ""}
    res = subprocess.run(
        [sys.executable, "modal_app.py", "upload", str(tmp_path / "fer")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error: could not upload to Modal") and "modal setup" in res.stderr
