"""modal_app's remote function bodies, run the way Modal runs them (``tests/modal_harness.py``): the entry file alone
at ``root/``, the image's ``emotion/`` and ``conf/`` under ``root/project``, ``MODAL_IS_REMOTE=1``, Volumes as local
stores with one mount per container, containers SIGKILLed mid-epoch and started again as Modal restarts them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_face
from tests.modal_harness import (
    CPU,
    DEMO,
    LocalVolume,
    ModalImage,
    history,
    kill,
    killed_and_restarted,
    killed_and_restarted_cluster,
    run_cluster,
    tensorboard_latency,
    wait_for_commit,
)

pytest.importorskip("modal")
BASE = [*DEMO, *CPU, "trainer.max_epochs=3"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return ModalImage(tmp_path_factory.mktemp("modal-image"))


def import_in_container(image: ModalImage) -> subprocess.CompletedProcess:
    env = {"MODAL_IS_REMOTE": "1", "PYTHONPATH": str(image.project), "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    code = "import modal_app, emotion; print(emotion.__file__); print(sorted(modal_app.TRAIN_ON_GPUS))"
    return subprocess.run([sys.executable, "-c", code], cwd=image.root, env=env, capture_output=True, text=True)


def test_modal_app_imports_in_a_container_laid_out_as_the_image(image):
    res = import_in_container(image)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines() == [str(image.project / "emotion" / "__init__.py"), "[1, 2, 4, 8]"]


def test_the_harness_catches_a_file_read_at_import_that_the_image_does_not_hold(tmp_path):
    """The crash of 2026-12-01, put back into a copy: reading .ci/ at import kills every container."""
    image = ModalImage(tmp_path)
    entry = image.root / "modal_app.py"
    entry.write_text(entry.read_text() + "\nLOCK_FILE.read_text()  # as the TensorBoard image once did\n")
    res = import_in_container(image)
    assert res.returncode != 0 and "FileNotFoundError" in res.stderr and ".ci/modal-requirements.txt" in res.stderr


@pytest.mark.slow  # a training killed and restarted (test_resume.py guards resuming in the default suite)
def test_a_killed_container_restarted_by_modal_resumes_its_run(image):
    """Every commit while the run trains publishes that epoch's last.ckpt; SIGKILL mid-epoch loses only what was not
    committed; the restarted container reloads the Volume and resumes from the committed last.ckpt."""
    resumed = killed_and_restarted(image, "train", BASE, "killed", kill_after_epoch=0)
    assert resumed["status"] == "ok" and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    key = "train/runs/killed/checkpoints/last.ckpt"
    published = [c["last_epochs"].get(key) for c in image.calls() if c["op"] == "commit" and key in c["last_epochs"]]
    assert published == sorted(published) and set(published) == {0, 1, 2}  # each epoch published, in order
    assert "fitting (resuming from" in (image.run_dir("killed") / "train.log").read_text()
    reloads = [c for c in image.calls() if c["op"] == "reload"]
    assert reloads and all(c["ok"] for c in reloads)  # the body reloads before it opens anything


@pytest.mark.slow  # one more training
def test_the_resumed_run_ends_exactly_where_an_uninterrupted_one_ends(image):
    if not image.run_dir("killed").joinpath("metrics.json").is_file():
        killed_and_restarted(image, "train", BASE, "killed", kill_after_epoch=0)
    straight = image.call("train", [*BASE, "run_name=straight"], name="straight")
    resumed = json.loads((image.run_dir("killed") / "metrics.json").read_text())
    assert resumed["metrics"] == straight["metrics"]
    assert history(image, "killed") == history(image, "straight")


def test_a_deterministic_failure_is_reported_once_not_retried(image):
    result = image.call("train", [*BASE, "model.optimizer.lr=-1", "run_name=bad"], name="bad")
    assert result["status"] == "failed" and "deterministic: not retried" in result["error"]
    assert "model.optimizer.lr must be >= 0" in result["error"]


def test_tensorboard_shows_an_epoch_committed_after_it_started_within_its_refresh_interval(image):
    latencies = tensorboard_latency(image, refresh_s=2.0, epochs=2)
    assert len(latencies) == 2 and max(latencies) <= 2.0 + 0.5  # half-interval mirror + half-interval reload
    assert not [c for c in image.calls() if c["op"] == "reload" and not c["ok"]]  # nothing held the Volume open


@pytest.mark.slow  # a training in the container (test_modal_app.py checks the upload path)
def test_an_uploaded_data_set_is_what_the_container_trains_on(image, tmp_path):
    import modal_app

    src = tmp_path / "fer"
    for i, label in enumerate(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"] * 3):
        write_face(src / "train" / label / f"Training_{i}.png", label, i)
        write_face(src / "test" / label / f"PublicTest_{i}.jpg", label, 100 + i)
    message = modal_app.upload([str(src)], volume=LocalVolume(image.data_store, tmp_path / "client"))
    assert "data.root=/data/fer2013" in message
    tiny = ["data.batch_size=8", "trainer.max_epochs=1", "callbacks.progress_bar.log_refresh_rate=1000", *CPU]
    result = image.call("train", [*tiny, "run_name=uploaded"], name="uploaded")
    assert result["status"] == "ok", result
    assert result["data"]["root"] == str(image.mount("main") / "data" / "fer2013")  # the mounted data Volume
    assert sum(result["data"]["train_class_counts"].values()) == 21


@pytest.mark.slow  # 3 two-rank trainings (gloo): ~2 min on 2 cores
def test_ddp_on_one_machine_killed_and_restarted_matches_the_uninterrupted_run(image):
    ddp = [*BASE, "trainer=ddp", "trainer.devices=2"]
    straight = image.call("train_2_gpus", [*ddp, "run_name=ddp-straight"], name="ddp-straight")
    resumed = killed_and_restarted(image, "train_2_gpus", ddp, "ddp-killed", kill_after_epoch=0)
    assert round(resumed["metrics"]["val/acc"], 4) == round(straight["metrics"]["val/acc"], 4)
    assert history(image, "ddp-killed") == history(image, "ddp-straight")


@pytest.mark.slow  # 2 "machines" x 1 CPU rank each, uninterrupted, then killed and restarted: ~3 min on 2 cores
def test_a_two_node_cluster_killed_and_restarted_matches_the_uninterrupted_cluster_run(image):
    """Each "machine" is a container given what Modal's cluster info gives (its rank, the first machine's address,
    the rendezvous port) and its own Volume mounts; Lightning wires the ranks across them."""
    straight = run_cluster(image, BASE, "nodes-straight", nodes=2)
    resumed = killed_and_restarted_cluster(image, BASE, "nodes-killed", nodes=2, kill_after_epoch=0)
    assert resumed["status"] == "ok" and resumed["metrics"] == straight["metrics"]
    assert history(image, "nodes-killed") == history(image, "nodes-straight")
    node1_logs = image.base / "containers" / "nodes-killed-2-node1" / "tmp" / "emotion-node1" / "train" / "runs"
    assert (node1_logs / "nodes-killed" / ".hydra").is_dir()  # the second machine logs to its own disk
    committed = (image.run_dir("nodes-killed") / ".hydra" / "overrides.yaml").read_text()
    assert str(image.mount("node0")) in committed  # what the Volume holds is machine 1's (rank 0's) run


@pytest.mark.slow  # two trainings
def test_a_sweep_fans_its_jobs_out_to_training_containers(image):
    import modal_app

    def launch(jobs):
        return [image.call("train", list(overrides), name=f"sweep-{i}") for i, (overrides,) in enumerate(jobs)]

    grid = [*BASE, "trainer.max_epochs=1", "model.optimizer.lr=1e-3,1e-2"]
    results = modal_app.run_sweep(grid, launch)
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert results[0]["metrics"]["val/acc"] >= results[1]["metrics"]["val/acc"]
    names = {Path(r["run_dir"]).name for r in results}
    assert len(names) == 2 and all((image.run_dir(n) / "metrics.json").is_file() for n in names)  # both committed


@pytest.mark.slow  # a training in the container (test_modal_app.py checks the rewriting and the upload)
def test_a_file_named_on_the_command_line_is_read_by_the_container_from_the_runs_volume(image, tmp_path, monkeypatch):
    import modal_app

    monkeypatch.setattr(modal_app, "RUNS_DIR", str(image.mount("main") / "runs"))  # /runs on both sides on Modal
    client = LocalVolume(image.runs_store, tmp_path / "client")
    listed = [f"train/angry/Training_{i:06d}.jpg" for i in range(1, 6)]  # the generated faces' first names
    verdict = tmp_path / "verdict.json"
    verdict.write_text(json.dumps({"exclude": listed}))
    overrides = [*DEMO, *CPU, "trainer.max_epochs=1", f"data.exclude={verdict}", "run_name=with-exclude"]
    sent, uploads = modal_app.input_files(overrides)
    modal_app.upload_inputs(uploads, volume=client)
    result = image.call("train", sent, name="with-exclude")
    assert result["status"] == "ok", result
    excluded = result["split_protocol"]["excluded_from_train"]
    assert excluded.startswith(f"5 images listed in {image.mount('main') / 'runs' / 'inputs'}/")


@pytest.mark.slow  # three containers' trainings (test_modal_app.py checks the rewriting and the upload)
def test_a_run_started_from_a_checkpoint_of_this_machine_continues_it_and_a_restart_resumes_its_own(
    image, tmp_path, monkeypatch
):
    import shutil

    import modal_app

    monkeypatch.setattr(modal_app, "RUNS_DIR", str(image.mount("main") / "runs"))  # /runs on both sides on Modal
    proc, _ = image.start("train", [*BASE, "run_name=elsewhere"], name="elsewhere")
    try:
        wait_for_commit(image, "elsewhere", 0, [proc])  # a run stopped after its first epoch
    finally:
        kill(proc)
    mine = tmp_path / "mine.ckpt"  # a checkpoint the user has here (trained here, or fetched with modal volume get)
    shutil.copy(image.run_dir("elsewhere") / "checkpoints" / "last.ckpt", mine)
    sent, uploads = modal_app.input_files([*BASE, f"ckpt_path={mine}"])
    modal_app.upload_inputs(uploads, volume=LocalVolume(image.runs_store, tmp_path / "client"))
    resumed = killed_and_restarted(image, "train", sent, "from-mine", kill_after_epoch=1)
    assert resumed["status"] == "ok" and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]  # 1: mine's
    log = (image.run_dir("from-mine") / "train.log").read_text()
    assert "fitting (resuming from " + str(image.mount("main") / "runs" / "inputs") in log  # the first container
    own = image.mount("main") / "runs" / "train" / "runs" / "from-mine" / "checkpoints" / "last.ckpt"
    assert f"fitting (resuming from {own})" in log  # the restarted one: its own last.ckpt, not mine again
