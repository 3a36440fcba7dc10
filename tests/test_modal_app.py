"""modal_app without the cloud: import offline, inspect the functions and the options handed to Modal (checked with
Modal's own validation), and check that nothing invalid ever reaches a GPU. The container bodies run in
``tests/test_modal_harness.py``, laid out as Modal lays out a container."""

import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT

modal = pytest.importorskip("modal")
import modal_app  # noqa: E402


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


def test_training_functions_retry_resume_and_tensorboard_has_its_own_small_image():
    for n, fn in modal_app.TRAIN_ON_GPUS.items():
        spec = fn._spec_
        assert spec.gpus == ("A100" if n == 1 else f"A100:{n}")
        assert set(spec.volumes) == {"/data", "/runs"}
    opts = modal_app.train_options(4)
    assert opts["timeout"] >= 6 * 3600 and opts["single_use_containers"] is True
    retries = opts["retries"]._to_proto()  # Modal's own validation ran in Retries(); the proto is what is sent
    assert retries.retries == modal_app.MAX_RETRIES >= 1
    assert modal_app.tensorboard._spec_.volumes.keys() == {"/runs"}
    assert modal_app.tensorboard_image is not modal_app.train_image
    lock = (ROOT / ".ci" / "modal-requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in lock and any(line.startswith("lightning==") for line in lock)
    assert modal_app.locked_requirements("tensorboard") == [p for p in lock if p.startswith("tensorboard")]
    assert not hasattr(modal_app, "train_cluster")  # defined only when EMOTION_NODES asks for a cluster


GPU_FALLBACK_CHECK = """
import json, modal_app
from modal._utils.function_utils import parse_gpu_config
from modal.exception import InvalidError
out = {}
for n, fn in modal_app.TRAIN_ON_GPUS.items():
    parsed = [parse_gpu_config(g) for g in fn._spec_.gpus]  # what Modal does with a decorator's list
    out[n] = [(p.gpu_type, p.count) for p in parsed]
modal_app._function_for(4).with_options(max_containers=modal_app.MAX_CONTAINERS)  # what a sweep sends
try:
    modal_app.train.with_options(gpu=modal_app.gpu_spec(4))
    out["with_options_list"] = "accepted"
except InvalidError as exc:
    out["with_options_list"] = str(exc)
cluster = modal_app.train_cluster._spec_
out["cluster"] = [(p.gpu_type, p.count) for p in map(parse_gpu_config, cluster.gpus)]
print(json.dumps(out))
"""


def test_a_gpu_fallback_list_builds_options_that_modals_own_validation_accepts():
    """EMOTION_GPU=H100,A100: a decorator may take the list (Modal tries the types in turn); with_options may not,
    so every GPU count has its own function and sweeps change only max_containers. With EMOTION_NODES=2 the
    cluster's function asks for every GPU of each machine."""
    env = {**os.environ, "EMOTION_GPU": "H100,A100", "EMOTION_NODES": "2"}
    res = subprocess.run(
        [sys.executable, "-c", GPU_FALLBACK_CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    for n in ("1", "2", "4", "8"):
        assert out[n] == [["H100", int(n)], ["A100", int(n)]]
    assert out["cluster"] == [["H100", 8], ["A100", 8]]
    assert "must be a string" in out["with_options_list"]  # why with_options(gpu=[…]) is never called


def test_a_bad_setting_is_one_line_at_import():
    env = {**os.environ, "EMOTION_NODES": "two"}
    res = subprocess.run(
        [sys.executable, "-c", "import modal_app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "EMOTION_NODES='two' must be a whole number >= 1" in res.stderr


def test_run_names_are_stable_so_reruns_resume():
    a = modal_app.run_name_for(["experiment=baseline", "trainer.max_epochs=3"])
    assert a == modal_app.run_name_for(["trainer.max_epochs=3", "experiment=baseline"])
    assert a.startswith("baseline-") and a != modal_app.run_name_for(["experiment=baseline"])
    assert modal_app.run_name_for(["run_name=mine", "experiment=demo"]) == "mine"
    assert modal_app.run_name_for(["experiment=baseline", "trainer.max_epochs=3", "ckpt_path=last"]) == a


def test_a_run_resumes_its_own_last_checkpoint_before_the_one_it_was_started_from():
    started = ["experiment=demo", "ckpt_path=/runs/inputs/ab/mine.ckpt"]
    first = modal_app.training_argv(started, "/runs", "/data", ("trainer=gpu",), None)
    assert [a for a in first if a.startswith("ckpt_path=")] == ["ckpt_path=/runs/inputs/ab/mine.ckpt"]
    own = Path("/runs/train/runs/x/checkpoints/last.ckpt")
    retried = modal_app.training_argv(started, "/runs", "/data", ("trainer=gpu",), own)
    assert [a for a in retried if a.startswith("ckpt_path=")] == [f"ckpt_path={own}"]
    fresh = modal_app.training_argv(["experiment=demo"], "/runs", "/data", ("trainer=gpu",), None)
    assert [a for a in fresh if a.startswith("ckpt_path=")] == ["ckpt_path=null"]


def test_gpus_option_asks_for_n_gpus_and_ddp():
    assert modal_app.split_gpus(["experiment=sota"]) == (1, ["experiment=sota"])
    n, overrides = modal_app.split_gpus(["gpus=4", "experiment=sota"])
    assert n == 4 and overrides == ["trainer=ddp", "experiment=sota", "trainer.devices=4"]
    assert modal_app.gpu_spec(4) == "A100:4"
    for bad in ("four", "3", "0"):
        with pytest.raises(SystemExit, match=f"gpus={bad}: give the GPUs of one machine, one of 1, 2, 4, 8"):
            modal_app.split_gpus([f"gpus={bad}"])


def test_a_cluster_uses_every_gpu_of_each_machine_and_lightnings_node_wiring():
    n, overrides = modal_app.split_gpus(["experiment=sota"], nodes=2)
    assert n == modal_app.NODE_GPUS == 8
    assert overrides == ["trainer=ddp", "experiment=sota", "trainer.devices=8", "trainer.num_nodes=2"]
    with pytest.raises(SystemExit, match="a cluster uses all 8 GPUs"):
        modal_app.split_gpus(["gpus=2"], nodes=2)
    node = modal_app.Node(rank=1, count=2, main_addr="fdaa::1")
    assert node.env() == {"MASTER_ADDR": "fdaa::1", "MASTER_PORT": "29500", "NODE_RANK": "1"}


class FakeCall:
    object_id = "fc-123"

    def get(self):
        return {"status": "ok", "metrics": {"val/acc": 0.5}}


class FakeFunction:
    def __init__(self):
        self.calls = []

    def spawn(self, overrides):
        self.calls.append(overrides)
        return FakeCall()


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("data.bach_size=8", "bach_size"),
        ("experiment=recipy", "recipy"),
        ("model.optimizer.lr=-1", "model.optimizer.lr must be >= 0"),
        ("+model.optimizer.betas=[2,0.9]", "Invalid beta parameter"),  # checked by building the optimizer
        ("trainer.max_epochs=abc", "whole number"),
        ("model.distill.teacher=/nowhere.ckpt", "neither a model file nor a shipped model"),
        ("model.distill.teacher=[emotion_vgg,/nowhere.ckpt]", "'/nowhere.ckpt' is neither a model file"),
        ("model.label_smoothing=0.1", r"model.label_smoothing: no such setting \(model's settings: .*loss"),
        ("data.root=/données", "characters Hydra reads only inside quotes"),
    ],
)
def test_a_bad_override_fails_locally_and_never_reaches_remote(monkeypatch, capsys, override, reason):
    import re

    fake = FakeFunction()
    monkeypatch.setitem(modal_app.TRAIN_ON_GPUS, 1, fake)
    with pytest.raises(SystemExit) as exc:
        modal_app._train_and_wait(["experiment=recipe", override])
    assert re.search(reason, f"{exc.value} {capsys.readouterr().err}")
    assert fake.calls == []


def test_a_valid_command_passes_preflight_and_is_sent_once(monkeypatch, capsys):
    fake = FakeFunction()
    monkeypatch.setitem(modal_app.TRAIN_ON_GPUS, 1, fake)
    monkeypatch.setattr(sys, "argv", ["modal", "run", "--detach", "modal_app.py", "experiment=recipe"])
    teachers = "model.distill.teacher=[emotion_vgg_v8_v9,emotion_vgg]"  # a list of shipped models: averaged
    modal_app._train_and_wait(["experiment=recipe", "trainer.max_epochs=3", teachers])
    assert len(fake.calls) == 1 and fake.calls[0][-1].startswith("run_name=recipe-") and teachers in fake.calls[0]
    out = capsys.readouterr()
    assert "function call: fc-123" in out.out and "modal app logs" in out.out and "modal volume get" in out.out
    assert "--detach" not in out.err  # detached: no warning


def test_without_detach_a_run_warns_and_launch_is_refused(monkeypatch, capsys):
    fake = FakeFunction()
    monkeypatch.setitem(modal_app.TRAIN_ON_GPUS, 1, fake)
    monkeypatch.setattr(sys, "argv", ["modal", "run", "modal_app.py", "experiment=recipe"])
    alone = ["model.distill.teacher=null", "model.distill.drop_labels_below=0"]  # no teacher: no labels to doubt
    modal_app._train_and_wait(["experiment=recipe", *alone])
    assert "stops when this terminal closes" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="modal run --detach modal_app.py launch"):
        modal_app._launch(["experiment=recipe", *alone])
    assert len(fake.calls) == 1  # the refused launch sent nothing


@pytest.mark.parametrize(
    ("argv", "detached"),
    [
        (["/venv/bin/modal", "run", "--detach", "modal_app.py", "launch"], True),
        (["/venv/lib/modal/__main__.py", "run", "-d", "modal_app.py"], True),
        (["modal", "run", "modal_app.py", "launch", "--detach"], False),  # after the file: the entrypoint's words
        (["modal", "run", "--detach", "modal_app.py::main"], True),
        (["modal", "run", "modal_app.py"], False),
        (["python", "modal_app.py", "upload"], False),
    ],
)
def test_detach_is_read_from_modals_own_options(argv, detached):
    assert modal_app.launched_detached(argv) is detached


def test_a_failed_run_is_reported_once_and_exits_nonzero():
    with pytest.raises(SystemExit, match="error: training of run 'x' failed"):
        modal_app._report({"status": "failed", "error": "training of run 'x' failed (…)"})


@pytest.mark.parametrize(
    ("returncode", "output", "transient"),
    [
        (1, "error: model.optimizer.lr must be >= 0, got -1.0; e.g. model.optimizer.lr=1e-3\n", False),
        (1, "Traceback …\nZeroDivisionError: division by zero\n", False),  # a bug: paying again will not help
        (1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n", False),
        (1, "torch.distributed.DistBackendError: NCCL error in: …, unhandled system error\n", True),
        (1, "RuntimeError: CUDA error: uncorrectable ECC error encountered\n", True),
        (1, "OSError: [Errno 5] Input/output error: '/runs/train/runs/x/checkpoints/last.ckpt'\n", True),
        (-6, "terminate called after throwing an instance of 'c10::Error'\n", True),  # SIGABRT: NCCL's watchdog
        (-9, "", False),  # SIGKILL: the kernel's OOM killer (a preemption takes the whole container instead)
    ],
)
def test_failures_are_classified_so_that_only_transient_ones_are_retried(returncode, output, transient):
    failure = modal_app.TrainingFailed("x", returncode, output)
    assert failure.transient is transient
    assert ("not retried" in str(failure)) is not transient


def test_the_container_body_raises_transient_failures_and_returns_deterministic_ones(monkeypatch):
    class Volume:
        reloads = 0

        def reload(self):
            Volume.reloads += 1

    monkeypatch.setattr(modal_app, "runs_volume", Volume())

    def failing(output):
        def job(*args, **kwargs):
            raise modal_app.TrainingFailed("x", 1, output)

        return job

    monkeypatch.setattr(modal_app, "train_job", failing("error: data.root=/data/fer2013 does not exist\n"))
    result = modal_app.train_in_container(["experiment=baseline"])
    assert result["status"] == "failed" and "does not exist" in result["error"]
    monkeypatch.setattr(modal_app, "train_job", failing("torch.distributed.DistNetworkError: Connection reset\n"))
    with pytest.raises(modal_app.TrainingFailed, match="transient"):
        modal_app.train_in_container(["experiment=baseline"])
    assert Volume.reloads == 2  # each attempt starts from the newest committed checkpoints


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
                out.append(RuntimeError("lost the GPU"))  # transient, retries exhausted: an exception
                continue
            if "model.optimizer.lr=-1" in overrides:
                out.append({"status": "failed", "error": "lr must be >= 0"})  # deterministic: returned
                continue
            lr = float(overrides[-1].split("=")[1])
            out.append({"metrics": {"val/acc": lr * 100}, "run_dir": str(tmp_path / str(lr))})
        return out

    from emotion.training.sweep_report import markdown

    results = modal_app.run_sweep(["experiment=demo", "model.optimizer.lr=0.001,0.003,bad,-1"], local_launch)
    assert len(calls) == 4
    assert [r["metrics"].get("val/acc") for r in results] == [0.3, 0.1, None, None]
    assert {results[-2]["status"], results[-1]["status"]} == {"failed: lost the GPU", "failed: lr must be >= 0"}
    table = markdown(results, "val/acc")  # the local sweeps' report
    assert table.splitlines()[0] == "| rank | run | model.optimizer.lr | val/acc | status | minutes |"
    assert table.splitlines()[2] == "| 1 | 0.003 | 0.003 | 0.3000 | ok |  |"


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


class RecordingVolume:
    """A Volume stand-in that records what a batch upload puts where."""

    def __init__(self):
        self.puts = []

    @contextmanager
    def batch_upload(self, force=False):
        volume = self

        class Batch:
            def put_file(self, src, dest):
                volume.puts.append((src, dest))

        yield Batch()


def test_input_files_of_this_machine_travel_with_the_run_into_the_runs_volume(tmp_path):
    verdict, teacher = tmp_path / "verdict.json", tmp_path / "teacher.safetensors"
    verdict.write_text('{"exclude": ["train/angry/Training_1.png"]}')
    teacher.write_bytes(b"weights")
    overrides = [
        "experiment=recipe",
        f"data.drop_labels={verdict}",
        f"model.distill.teacher=[emotion_vgg,{teacher}]",
        "model.init_from=null",
        "data.views=/runs/inputs/abc/views.npz",  # in the Volume already
    ]
    out, uploads = modal_app.input_files(overrides)
    assert out[0] == "experiment=recipe" and out[3:] == overrides[3:]
    assert out[1].startswith("data.drop_labels=/runs/inputs/") and out[1].endswith("/verdict.json")
    assert out[2].startswith("model.distill.teacher=[emotion_vgg,/runs/inputs/")
    assert {f"/runs/{dest}" for dest in uploads} == {out[1].split("=")[1], out[2].split(",")[1][:-1]}
    assert sorted(uploads.values()) == sorted([verdict, teacher])
    assert modal_app.input_files(overrides)[0] == out  # the same files: the same places, the same run name
    verdict.write_text('{"exclude": []}')
    changed = modal_app.input_files(overrides)[0]
    assert changed[1] != out[1] and changed[2] == out[2]  # changed content: a new place (and run name)
    assert modal_app.run_name_for(changed) != modal_app.run_name_for(out)
    with pytest.raises(SystemExit, match=r"data.exclude=/nowhere/x.json: no such file here; a Modal run reads"):
        modal_app.input_files(["data.exclude=/nowhere/x.json"])


def test_a_checkpoint_of_this_machine_travels_with_the_run_and_last_stays_the_runs_own(tmp_path):
    mine = tmp_path / "last.ckpt"
    mine.write_bytes(b"a training checkpoint")
    out, uploads = modal_app.input_files(["experiment=recipe", f"ckpt_path={mine}"])
    assert out[1].startswith("ckpt_path=/runs/inputs/") and out[1].endswith("/last.ckpt")
    assert list(uploads.values()) == [mine] and f"/runs/{next(iter(uploads))}" == out[1].split("=", 1)[1]
    assert modal_app.input_files(["ckpt_path=last"]) == (["ckpt_path=last"], {})
    with pytest.raises(SystemExit, match=r"ckpt_path=logs/x.ckpt: no such file here.*ckpt_path=last resumes"):
        modal_app.input_files(["ckpt_path=logs/x.ckpt"])


def test_a_local_file_that_is_no_training_checkpoint_fails_before_anything_is_sent(monkeypatch, tmp_path):
    fake = FakeFunction()
    monkeypatch.setitem(modal_app.TRAIN_ON_GPUS, 1, fake)
    model_file = tmp_path / "model.ckpt"
    torch = pytest.importorskip("torch")
    torch.save({"state_dict": {}}, model_file)  # weights, no optimizer state or epoch: nothing to resume
    with pytest.raises(SystemExit, match=r"holds no training state to resume.*model.init_from=PATH"):
        modal_app._train_and_wait(["experiment=recipe", f"ckpt_path={model_file}"])
    assert fake.calls == []


def test_a_run_naming_a_local_file_uploads_it_before_it_is_sent(monkeypatch, capsys, tmp_path):
    fake, volume = FakeFunction(), RecordingVolume()
    monkeypatch.setitem(modal_app.TRAIN_ON_GPUS, 1, fake)
    monkeypatch.setattr(modal_app, "runs_volume", volume)
    monkeypatch.setattr(sys, "argv", ["modal", "run", "--detach", "modal_app.py", "experiment=recipe"])
    verdict = tmp_path / "verdict.json"
    verdict.write_text('{"exclude": ["train/angry/Training_1.png"]}')
    modal_app._train_and_wait(["experiment=recipe", f"data.exclude={verdict}"])
    (sent,) = fake.calls
    remote = next(o for o in sent if o.startswith("data.exclude=")).split("=", 1)[1]
    assert volume.puts == [(str(verdict), remote.removeprefix("/runs"))]
    assert f"uploaded {verdict} to volume 'emotion-runs'" in capsys.readouterr().out

    class Offline(RecordingVolume):
        @contextmanager
        def batch_upload(self, force=False):
            raise ConnectionError("Could not connect to the Modal server.\nmore")
            yield

    monkeypatch.setattr(modal_app, "runs_volume", Offline())
    with pytest.raises(SystemExit) as exc:
        modal_app._train_and_wait(["experiment=recipe", f"data.exclude={verdict}", "seed=3"])
    assert str(exc.value) == (
        "error: could not upload the run's input files to Modal (Could not connect to the Modal server.); "
        "authenticate with `modal setup` first"
    )
    assert len(fake.calls) == 1  # nothing sent without its files


def test_a_sweep_uploads_its_input_files_once_and_sends_every_job_their_volume_paths(monkeypatch, capsys, tmp_path):
    class Sweeper:
        def __init__(self):
            self.jobs = []

        def with_options(self, **kw):
            return self

        def starmap(self, jobs, return_exceptions=False):
            self.jobs = [overrides for (overrides,) in jobs]
            return [{"status": "failed", "error": "not run"} for _ in jobs]

    sweeper, volume = Sweeper(), RecordingVolume()
    monkeypatch.setattr(modal_app, "_function_for", lambda n: sweeper)
    monkeypatch.setattr(modal_app, "runs_volume", volume)
    monkeypatch.setattr(sys, "argv", ["modal", "run", "--detach", "modal_app.py", "sweep"])
    verdict = tmp_path / "verdict.json"
    verdict.write_text('{"exclude": ["train/angry/Training_1.png"]}')
    modal_app._sweep(["experiment=recipe", f"data.drop_labels={verdict}", "model.optimizer.lr=1e-3,3e-3"])
    assert len(sweeper.jobs) == 2 and len(volume.puts) == 1
    remote = "/runs" + volume.puts[0][1]
    assert all(f"data.drop_labels={remote}" in job for job in sweeper.jobs)
    assert f"uploaded {verdict} to volume" in capsys.readouterr().out
