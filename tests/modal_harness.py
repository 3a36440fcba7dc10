"""A Modal container, laid out locally: runs ``modal_app``'s remote function bodies the way Modal runs them.

Inside a Modal container only the entry file is at ``/root/modal_app.py``; the image adds ``emotion/`` and ``conf/``
under ``/root/project``, installs the lock file (here: this venv) and sets ``MODAL_IS_REMOTE=1``; Volumes are mounted
at ``/data`` and ``/runs``. :class:`ModalImage` lays a temporary folder out the same way, starts each "container" as
a subprocess that imports ``modal_app`` from there (and asserts that ``emotion`` comes from the image's copy, not
from this checkout) and calls a function's body with ``.local()``. Volumes are :class:`LocalVolume` stand-ins: a
committed store plus one mount per container, so what a killed container did not commit is lost, as on Modal, and
``reload()`` fails while a file of the mount is open, as Modal's does. Every ``commit()``/``reload()`` is recorded.

``python tests/modal_harness.py`` (``make modal-check``) runs the whole scenario and prints what it measured; the
tests in ``tests/test_modal_harness.py`` run its parts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = [
    "experiment=demo",
    "data.synthesize.n_train=40",
    "data.synthesize.n_val=4",
    "data.synthesize.n_test=4",
    "data.batch_size=8",  # 35 steps an epoch: long enough to be killed in the middle of one
    "callbacks.progress_bar.log_refresh_rate=1000",
    "~callbacks.model_summary",
    "logger=tensorboard",
]
CPU = ["trainer.accelerator=cpu", "trainer.precision=32-true"]  # on Modal the image's default is trainer=gpu


# ----------------------------------------------------------------------------- stand-ins (run in the container)
def _mirror(src: Path, dst: Path) -> None:
    """Make ``dst`` hold exactly ``src``'s files (copying only what changed)."""
    dst.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        target = dst / rel
        wanted.add(rel)
        with contextlib.suppress(FileNotFoundError):  # a file replaced while we walk: the next sync takes it
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            st = path.stat()
            if target.is_file() and (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".harness-tmp")
            shutil.copy2(path, tmp)
            os.replace(tmp, target)
    for path in sorted(dst.rglob("*"), reverse=True):
        if path.relative_to(dst) not in wanted:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def open_files_under(folder: Path) -> list[str]:
    """Paths under ``folder`` that some process holds open (read from /proc)."""
    prefix, found = str(folder.resolve()) + os.sep, []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(prefix):
                        found.append(target)
    return found


def _last_epochs(mount: Path) -> dict[str, int]:
    """The epoch of every last.ckpt in the mount (what a commit publishes)."""
    import torch

    out = {}
    for path in mount.rglob("last.ckpt"):
        with contextlib.suppress(Exception):
            out[str(path.relative_to(mount))] = int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    return out


class LocalVolume:
    """A Modal Volume: ``store`` is what was committed, ``mount`` this container's view of it."""

    def __init__(self, store: str | Path, mount: str | Path, record: str | Path | None = None) -> None:
        self.store, self.mount = Path(store), Path(mount)
        self.record_file = Path(record) if record else None

    def _record(self, op: str, **fields: Any) -> None:
        if self.record_file is not None:
            with self.record_file.open("a") as fh:
                fh.write(json.dumps({"op": op, "t": time.time(), "pid": os.getpid(), **fields}) + "\n")

    @staticmethod
    def create(store: Path) -> Path:
        """An empty store: a link to its first version (a commit swaps the link, all or nothing, as Modal's is)."""
        first = store.with_name(f"{store.name}.v0")
        first.mkdir(parents=True, exist_ok=True)
        store.symlink_to(first.name)
        return store

    def commit(self) -> None:
        new = self.store.with_name(f"{self.store.name}.v{time.time_ns()}")
        shutil.copytree(self.store.resolve(), new, copy_function=os.link)  # unchanged files: shared, not copied
        _mirror(self.mount, new)  # changed files are replaced, never written through a shared link
        link = new.with_name(new.name + ".link")
        link.symlink_to(new.name)
        os.replace(link, self.store)
        self._record("commit", last_epochs=_last_epochs(self.store))

    def reload(self) -> None:
        busy = open_files_under(self.mount)
        if busy:
            self._record("reload", ok=False, open_files=busy[:5])
            raise RuntimeError(f"there are open files preventing the operation: {busy[:3]}")
        _mirror(self.store.resolve(), self.mount)
        self._record("reload", ok=True)

    @contextlib.contextmanager
    def batch_upload(self, force: bool = False):
        store = self.store

        class Batch:
            def put_directory(self, src: str, dest: str) -> None:
                shutil.copytree(src, store / dest.lstrip("/"), dirs_exist_ok=force)

            def put_file(self, src: str, dest: str) -> None:
                (store / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, store / dest.lstrip("/"))

        yield Batch()
        self._record("upload")


def drive() -> None:
    """The container's process: import modal_app as Modal does, swap in the stand-ins, call one function's body."""
    spec = json.loads(os.environ["HARNESS_SPEC"])
    import emotion
    import modal_app
    from emotion.atomic import atomic_write_text  # the test polls for the result file: whole or absent

    project = Path(spec["project"]).resolve()
    assert Path(modal_app.__file__).resolve().parent == Path.cwd().resolve(), modal_app.__file__
    assert Path(emotion.__file__).resolve().is_relative_to(project), f"emotion imported from {emotion.__file__}"
    modal_app.RUNS_DIR, modal_app.DATA_DIR, modal_app.REMOTE_ROOT = spec["runs"], spec["data"], str(project)
    modal_app.TENSORBOARD_MIRROR = spec["mirror"]
    modal_app.COMMIT_POLL_S = 0.2  # the demo's epochs last about a second
    modal_app.runs_volume = LocalVolume(spec["runs_store"], spec["runs"], spec["record"])
    modal_app.data_volume = LocalVolume(spec["data_store"], spec["data"], spec["record"])
    if spec.get("node"):
        node = modal_app.Node(**spec["node"])
        modal_app.this_node = lambda: node
    name = spec["function"]
    fn = modal_app.TRAIN_ON_GPUS[int(name.split("_")[1])] if name.endswith("_gpus") else getattr(modal_app, name)
    if name == "tensorboard":
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        server = make_server("127.0.0.1", 0, fn.local(), handler_class=Quiet)
        atomic_write_text(spec["result"], json.dumps({"port": server.server_port}))
        server.serve_forever()
        return
    result = fn.local(*spec["args"])
    atomic_write_text(spec["result"], json.dumps(result))


# ----------------------------------------------------------------------------- the image (run by tests)
class ModalImage:
    """``base`` laid out as modal_app's image lays out a container; ``start``/``call`` run function bodies in it."""

    def __init__(self, base: str | Path, source: Path = ROOT) -> None:
        self.base = Path(base)
        self.root = self.base / "root"  # /root: Modal puts the entry file here
        self.project = self.root / "project"  # REMOTE_ROOT: what the image's add_local_dir adds
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        self.project.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "modal_app.py", self.root / "modal_app.py")
        shutil.copytree(source / "emotion", self.project / "emotion", ignore=ignore, dirs_exist_ok=True)
        shutil.copytree(source / "conf", self.project / "conf", ignore=ignore, dirs_exist_ok=True)
        self.harness = self.base / "harness"
        self.harness.mkdir(exist_ok=True)
        shutil.copy2(Path(__file__), self.harness / "modal_harness.py")
        (self.base / "volumes").mkdir()
        self.runs_store = LocalVolume.create(self.base / "volumes" / "runs")
        self.data_store = LocalVolume.create(self.base / "volumes" / "data")
        self.record = self.base / "volume-calls.jsonl"
        self.record.touch()

    def mount(self, slot: str) -> Path:
        """Where the containers of ``slot`` mount the Volumes (``runs/``, ``data/``)."""
        return self.base / "mnt" / slot

    def run_dir(self, run_name: str) -> Path:
        """A run's folder as committed to the runs Volume."""
        return self.runs_store / "train" / "runs" / run_name

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def start(
        self,
        function: str,
        *args: Any,
        name: str,
        env: dict[str, str] | None = None,
        node: dict[str, Any] | None = None,
        quiet: bool = True,
        slot: str = "main",
    ) -> tuple[subprocess.Popen, Path]:
        """Start a container running ``function``'s body; returns the process and the file its result lands in.
        A new container mounts the Volumes as they were last committed, at its ``slot``'s paths: on Modal every
        container mounts them at /runs and /data, and a restarted run must find the paths its checkpoint names, so
        containers that run one after another share a slot; containers running at once need slots of their own."""
        box = self.base / "containers" / name
        shutil.rmtree(box, ignore_errors=True)
        (box / "tmp").mkdir(parents=True)
        mnt = self.mount(slot)
        shutil.rmtree(mnt, ignore_errors=True)
        _mirror(self.runs_store.resolve(), mnt / "runs")
        _mirror(self.data_store.resolve(), mnt / "data")
        spec = {
            "function": function,
            "args": list(args),
            "project": str(self.project),
            "runs": str(mnt / "runs"),
            "data": str(mnt / "data"),
            "mirror": str(box / "tensorboard-mirror"),
            "runs_store": str(self.runs_store),
            "data_store": str(self.data_store),
            "record": str(self.record),
            "result": str(box / "result.json"),
            "node": node,
        }
        full_env = {
            **os.environ,
            "MODAL_IS_REMOTE": "1",
            "PYTHONPATH": f"{self.project}{os.pathsep}{self.harness}",
            "HARNESS_SPEC": json.dumps(spec),
            "TMPDIR": str(box / "tmp"),
            **(env or {}),
        }
        out = subprocess.DEVNULL if quiet else None
        code = "import modal_harness; modal_harness.drive()"
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=self.root, env=full_env, start_new_session=True, stdout=out, stderr=out
        )
        return proc, box / "result.json"

    def call(self, function: str, *args: Any, name: str, timeout: float = 600, **kw: Any) -> dict[str, Any]:
        proc, result = self.start(function, *args, name=name, **kw)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            kill(proc)
        if code != 0:
            raise RuntimeError(f"container '{name}' ({function}) exited with status {code}")
        return json.loads(result.read_text())


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a container: its process group (the body, the training, every DDP rank)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for_commit(
    image: ModalImage, run_name: str, epoch: int, procs: list[subprocess.Popen], timeout: float = 300
) -> None:
    """Until a commit has published the run's last.ckpt at ``epoch`` (0-based) or later (while ``procs`` run)."""
    key = f"train/runs/{run_name}/checkpoints/last.ckpt"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(
                f"a container of {run_name} exited (status {[p.poll() for p in procs]}) before epoch {epoch}"
            )
        if any(c["op"] == "commit" and c.get("last_epochs", {}).get(key, -1) >= epoch for c in image.calls()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no commit of {run_name} at epoch {epoch} within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The history's clock columns: they differ between runs that agree in everything else.
TIMING_KEYS = ("elapsed_s", "cpu_s")


def history(image: ModalImage, run_name: str) -> list[dict[str, Any]]:
    report = json.loads((image.run_dir(run_name) / "metrics.json").read_text())
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in report["history"]]


# ----------------------------------------------------------------------------- scenarios
def killed_and_restarted(
    image: ModalImage, function: str, overrides: list[str], run_name: str, kill_after_epoch: int = 0
) -> dict[str, Any]:
    """Start ``function`` on a run, SIGKILL the container once epoch ``kill_after_epoch`` (0-based) was committed and
    the next epoch is under way, then call it again as Modal's restart (or retry) would; returns the second result."""
    args = [*overrides, f"run_name={run_name}"]
    proc, _ = image.start(function, args, name=f"{run_name}-1")
    try:
        wait_for_commit(image, run_name, kill_after_epoch, [proc])  # then the next epoch is under way
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        kill(proc)
    assert not (image.run_dir(run_name) / "metrics.json").exists(), "killed before the end"
    return image.call(function, args, name=f"{run_name}-2")


def cluster_args(overrides: list[str], run_name: str, nodes: int) -> list[str]:
    return [*overrides, "trainer=ddp", "trainer.devices=1", f"trainer.num_nodes={nodes}", f"run_name={run_name}"]


def start_cluster(image: ModalImage, args: list[str], name: str, nodes: int) -> list[tuple[subprocess.Popen, Path]]:
    """``nodes`` local "machines" with one CPU rank each, wired as Modal's cluster info wires them (each its rank,
    the first machine's address, one rendezvous port), each with its own Volume mounts."""
    env = {"EMOTION_NODES": str(nodes), "EMOTION_NODE_GPUS": "1"}
    port = free_port()
    return [
        image.start(
            "train_cluster",
            args,
            name=f"{name}-node{r}",
            env=env,
            node={"rank": r, "count": nodes, "main_addr": "127.0.0.1", "port": port},
            slot=f"node{r}",
        )
        for r in range(nodes)
    ]


def finish_cluster(started: list[tuple[subprocess.Popen, Path]], timeout: float = 600) -> dict[str, Any]:
    """Wait for every machine; rank 0's result (the one Modal returns)."""
    try:
        for proc, _ in started:
            if proc.wait(timeout=timeout) != 0:
                raise RuntimeError(f"a cluster container exited with status {proc.returncode}")
    finally:
        for proc, _ in started:
            kill(proc)
    return json.loads(started[0][1].read_text())


def run_cluster(image: ModalImage, overrides: list[str], run_name: str, nodes: int = 2) -> dict[str, Any]:
    return finish_cluster(start_cluster(image, cluster_args(overrides, run_name, nodes), run_name, nodes))


def killed_and_restarted_cluster(
    image: ModalImage, overrides: list[str], run_name: str, nodes: int = 2, kill_after_epoch: int = 0
) -> dict[str, Any]:
    """:func:`killed_and_restarted` for a cluster: every machine killed together, all restarted."""
    args = cluster_args(overrides, run_name, nodes)
    first = start_cluster(image, args, f"{run_name}-1", nodes)
    try:
        wait_for_commit(image, run_name, kill_after_epoch, [proc for proc, _ in first])
    finally:
        for proc, _ in first:
            kill(proc)
    return finish_cluster(start_cluster(image, args, f"{run_name}-2", nodes))


def scalars(port: int, run: str, tag: str) -> list[int]:
    """The steps TensorBoard's HTTP API serves for one run's tag ([] until it has them)."""
    query = urllib.parse.urlencode({"run": run, "tag": tag})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}", timeout=10) as r:
            return [int(step) for _, step, _ in json.loads(r.read())]
    except urllib.error.HTTPError:
        return []


def tensorboard_latency(image: ModalImage, refresh_s: float = 2.0, epochs: int = 3) -> list[float]:
    """Start the TensorBoard container, then, as a training container would, write and commit one epoch's scalar
    after another; returns the seconds each took to appear in TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    writer_mount = image.mount("writer") / "runs"
    _mirror(image.runs_store.resolve(), writer_mount)
    volume = LocalVolume(image.runs_store, writer_mount, image.record)
    logdir = writer_mount / "train" / "runs" / "board" / "tensorboard"
    writer = SummaryWriter(str(logdir))
    writer.add_scalar("val/acc", 0.1, 0)
    writer.flush()
    volume.commit()
    refresh = {"EMOTION_TENSORBOARD_REFRESH_S": str(refresh_s)}
    proc, result = image.start("tensorboard", name="tensorboard", env=refresh, slot="tensorboard")
    latencies = []
    try:
        deadline = time.time() + 120
        while not result.exists() and time.time() < deadline:
            time.sleep(0.1)
        port = json.loads(result.read_text())["port"]
        run = "train/runs/board/tensorboard"
        while scalars(port, run, "val/acc") != [0] and time.time() < deadline:
            time.sleep(0.1)
        for step in range(1, epochs + 1):
            writer.add_scalar("val/acc", 0.1 * step, step)  # the same event file, appended (as a run does)
            writer.flush()
            volume.commit()
            t0 = time.time()
            while step not in scalars(port, run, "val/acc"):
                if time.time() - t0 > 10 * refresh_s:
                    raise TimeoutError(f"epoch {step} not shown {10 * refresh_s:.0f} s after its commit")
                time.sleep(0.05)
            latencies.append(time.time() - t0)
    finally:
        writer.close()
        kill(proc)
    return latencies


def val_acc(image: ModalImage, run_name: str) -> float:
    return json.loads((image.run_dir(run_name) / "metrics.json").read_text())["metrics"]["val/acc"]


def main() -> None:
    """The whole scenario, with what it measured (``make modal-check``)."""
    with tempfile.TemporaryDirectory(prefix="modal-harness-") as tmp:
        image = ModalImage(tmp)
        t0 = time.time()
        base = [*DEMO, *CPU, "trainer.max_epochs=4"]
        ddp = [*base, "trainer=ddp", "trainer.devices=2"]
        for label, function, overrides in (("1 GPU", "train", base), ("DDP, 2 ranks", "train_2_gpus", ddp)):
            slug = function.replace("_", "-")
            image.call(function, [*overrides, f"run_name={slug}-straight"], name=f"{slug}-straight")
            killed_and_restarted(image, function, overrides, f"{slug}-killed")
            same = history(image, f"{slug}-straight") == history(image, f"{slug}-killed")
            print(
                f"{label}: killed in epoch 2 and restarted: {'the same' if same else 'a DIFFERENT'} history as the "
                f"uninterrupted run (val/acc {val_acc(image, f'{slug}-straight'):.4f} vs "
                f"{val_acc(image, f'{slug}-killed'):.4f})"
            )
        run_cluster(image, base, "nodes-straight")
        killed_and_restarted_cluster(image, base, "nodes-killed")
        same = history(image, "nodes-straight") == history(image, "nodes-killed")
        print(
            f"2 nodes x 1 rank, killed and restarted: {'the same' if same else 'a DIFFERENT'} history as the "
            f"uninterrupted cluster run (val/acc {val_acc(image, 'nodes-straight'):.4f} vs "
            f"{val_acc(image, 'nodes-killed'):.4f}); 2 ranks on one machine: "
            f"{val_acc(image, 'train-2-gpus-straight'):.4f}"
        )
        latencies = tensorboard_latency(image, refresh_s=2.0)
        shown = ", ".join(f"{s:.1f}" for s in latencies)
        print(f"TensorBoard (refresh 2 s): each new epoch appeared {shown} s after its commit")
        print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
