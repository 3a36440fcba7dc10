"""Train on Modal GPUs with exactly ``python -m emotion.train`` and the same Hydra overrides.

    modal run --detach modal_app.py experiment=recipe                     # train; survives a closed laptop
    modal run --detach modal_app.py gpus=4 experiment=sota                # DDP on 4 GPUs of one machine
    EMOTION_NODES=2 modal run --detach modal_app.py experiment=sota       # DDP on 2 machines x 8 GPUs (a cluster)
    modal run --detach modal_app.py launch experiment=recipe              # spawn, print the call id, return
    modal run --detach modal_app.py sweep experiment=recipe "model.optimizer.lr=1e-3,3e-3"
    python modal_app.py upload ../shared/data/fer2013                     # FER2013 into the data Volume, no build
    modal deploy modal_app.py                                             # TensorBoard over the runs Volume

Before anything is sent to Modal, the overrides are composed and validated here (unknown keys, unknown experiment,
bad values fail in seconds, for free); files of this machine that the overrides name (``data.exclude``,
``data.drop_labels``, ``data.views``, a teacher or ``model.init_from`` file) are uploaded into the runs Volume and
the run reads them there. In the container, ``python -m emotion.train`` runs as a subprocess, so that
Lightning's DDP launcher re-runs that module for every extra rank; the runs Volume is committed right after each
epoch's checkpoint files are written (the checkpoint writer renames a complete temp file into place) and at the end.
The same run name resumes from the run's ``last.ckpt``: when a rerun is asked for, when Modal restarts a preempted
container, and when the retry policy starts a run again after the timeout or a transient fault (lost GPU, broken
NCCL connection, storage error). A deterministic failure (a bad value, a bug) is not retried: it is reported once.

Settings (environment variables read at import, on the client and — baked into the image — in the container):
``EMOTION_GPU`` (default ``A100``; ``A100-80GB``, or a fallback list ``H100,A100``), ``EMOTION_NODES`` (machines
of a cluster, default 1), ``EMOTION_NODE_GPUS`` (GPUs per cluster machine, default 8), ``EMOTION_DATA_VOLUME``,
``EMOTION_RUNS_VOLUME``, ``EMOTION_KAGGLE_SECRET`` (a Modal secret with ``KAGGLE_USERNAME``/``KAGGLE_KEY``),
``EMOTION_TIMEOUT_H`` (per attempt), ``EMOTION_RETRIES``, ``EMOTION_MAX_CONTAINERS`` (sweep concurrency, default 4),
``EMOTION_TENSORBOARD_REFRESH_S`` and ``EMOTION_TENSORBOARD_PUBLIC=1``. Only Modal and the standard library are
imported at the top, and inside a container nothing outside the image is read (``tests/modal_harness.py`` imports
and runs this file laid out as the image lays it out).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import modal

HERE = Path(__file__).resolve().parent
LOCK_FILE = HERE / ".ci" / "modal-requirements.txt"  # the tested versions: `make modal-lock` regenerates it
DATA_DIR, RUNS_DIR = "/data", "/runs"
REMOTE_ROOT = "/root/project"
TENSORBOARD_MIRROR = "/tmp/tensorboard"
CLUSTER_PORT = 29500  # the rendezvous port of a cluster's first machine
GPU_COUNTS = (1, 2, 4, 8)  # gpus=N on one machine: a Modal function for each count (fallback lists need one)
COMMIT_POLL_S = 5.0  # how often the body looks for new checkpoints to commit


def _env_int(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.strip().isdigit() or int(raw) < low:
        raise SystemExit(f"error: {name}={raw!r} must be a whole number >= {low} (default {default})")
    return int(raw)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise SystemExit(f"error: {name}={raw!r} must be a positive number (default {default})")
    return value


APP_NAME = os.environ.get("EMOTION_MODAL_APP", "emotion")
DATA_VOLUME = os.environ.get("EMOTION_DATA_VOLUME", "emotion-data")
RUNS_VOLUME = os.environ.get("EMOTION_RUNS_VOLUME", "emotion-runs")
KAGGLE_SECRET = os.environ.get("EMOTION_KAGGLE_SECRET")  # e.g. "kaggle"; unset: no secret attached
GPU_TYPES = [g.strip() for g in os.environ.get("EMOTION_GPU", "A100").split(",") if g.strip()]
NODES = _env_int("EMOTION_NODES", 1)
NODE_GPUS = _env_int("EMOTION_NODE_GPUS", 8)
MAX_CONTAINERS = _env_int("EMOTION_MAX_CONTAINERS", 4)
MAX_RETRIES = _env_int("EMOTION_RETRIES", 5, low=0)
TIMEOUT_S = int(_env_float("EMOTION_TIMEOUT_H", 12) * 3600)
TENSORBOARD_REFRESH_S = _env_float("EMOTION_TENSORBOARD_REFRESH_S", 30)


def gpu_spec(n_gpus: int = 1) -> str | list[str]:
    """``A100`` / ``A100:4``; a fallback list (``H100,A100``) keeps its order (Modal tries them in turn)."""
    specs = [g if n_gpus == 1 else f"{g}:{n_gpus}" for g in GPU_TYPES]
    return specs[0] if len(specs) == 1 else specs


def in_container() -> bool:
    """True inside a Modal container (Modal sets MODAL_IS_REMOTE=1 there), also while this file is imported."""
    return os.environ.get("MODAL_IS_REMOTE") == "1" or not modal.is_local()


def locked_requirements(prefix: str = "") -> list[str]:
    """The lock file's pins (those whose name starts with ``prefix``). Images are built on the client, so only the
    client reads the file; a container has neither the file nor any need of it."""
    if in_container():
        return []
    pins = [line.strip() for line in LOCK_FILE.read_text().splitlines() if "==" in line and not line.startswith("#")]
    return [p for p in pins if p.lower().startswith(prefix)]


train_image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("libgl1", "libglib2.0-0")  # OpenCV's runtime libraries
    .pip_install(*locked_requirements())
    .pip_install("kagglehub>=0.3,<1")  # downloads FER2013 with the Kaggle secret (not part of the tested lock)
    .env(
        {
            "KAGGLEHUB_CACHE": f"{DATA_DIR}/kagglehub",
            "PYTHONPATH": REMOTE_ROOT,
            # the container imports this file again: the same settings define the same functions there
            "EMOTION_NODES": str(NODES),
            "EMOTION_NODE_GPUS": str(NODE_GPUS),
        }
    )
    .add_local_dir(HERE / "emotion", f"{REMOTE_ROOT}/emotion", ignore=["**/__pycache__", "**/*.pyc"])
    .add_local_dir(HERE / "conf", f"{REMOTE_ROOT}/conf")  # the YAML configs (python sources alone would miss them)
)
tensorboard_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*locked_requirements("tensorboard"))
    .env({"EMOTION_TENSORBOARD_REFRESH_S": str(TENSORBOARD_REFRESH_S)})
)
data_volume = modal.Volume.from_name(DATA_VOLUME, create_if_missing=True)
runs_volume = modal.Volume.from_name(RUNS_VOLUME, create_if_missing=True)
secrets = [modal.Secret.from_name(KAGGLE_SECRET)] if KAGGLE_SECRET else []

app = modal.App(APP_NAME)


# ----------------------------------------------------------------------------- plain Python, testable locally
def run_name_for(overrides: Sequence[str]) -> str:
    """The run name: ``run_name=…`` if given, else a stable name derived from the overrides (so reruns resume, with
    or without ``ckpt_path=last``)."""
    for o in overrides:
        if o.startswith("run_name="):
            return o.split("=", 1)[1]
    exp = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "default")
    named = [o for o in overrides if o not in ("ckpt_path=last", "ckpt_path=null")]  # "resume me" names no new run
    digest = hashlib.sha1("\n".join(sorted(named)).encode()).hexdigest()[:8]
    return f"{exp}-{digest}"


def split_gpus(args: Sequence[str], nodes: int = 1) -> tuple[int, list[str]]:
    """``gpus=N`` (not a Hydra override) → N and the remaining overrides. More than one GPU adds ``trainer=ddp``
    with N devices; a cluster (``nodes`` > 1) always uses every GPU of each machine and adds ``trainer.num_nodes``."""
    n, rest = (NODE_GPUS if nodes > 1 else 1), []
    for a in args:
        if a.startswith("gpus="):
            value = a.split("=", 1)[1]
            if nodes > 1:
                raise SystemExit(
                    f"error: gpus={value}: a cluster uses all {NODE_GPUS} GPUs of each of its {nodes} machines "
                    "(EMOTION_NODE_GPUS); leave gpus= out, or unset EMOTION_NODES for one machine"
                )
            if not value.isdigit() or int(value) not in GPU_COUNTS:
                counts = ", ".join(map(str, GPU_COUNTS))
                raise SystemExit(f"error: gpus={value}: give the GPUs of one machine, one of {counts}, e.g. gpus=4")
            n = int(value)
        else:
            rest.append(a)
    if n > 1 or nodes > 1:
        keys = {o.split("=", 1)[0] for o in rest}
        rest = [*(["trainer=ddp"] if "trainer" not in keys else []), *rest, f"trainer.devices={n}"]
        if nodes > 1:
            rest.append(f"trainer.num_nodes={nodes}")
    return n, rest


@dataclass(frozen=True)
class Node:
    """One machine of a cluster: its rank, the machine count, the first machine's address, the rendezvous port."""

    rank: int
    count: int
    main_addr: str
    port: int = CLUSTER_PORT

    def env(self) -> dict[str, str]:
        """What Lightning's environment reads on every machine (each then starts its own ranks)."""
        return {"MASTER_ADDR": self.main_addr, "MASTER_PORT": str(self.port), "NODE_RANK": str(self.rank)}


def this_node() -> Node:
    """This container's place in its Modal cluster (only inside a clustered function)."""
    cluster = modal.Cluster.from_context()
    ips = cluster.container_ips()
    return Node(rank=cluster.container_rank(), count=len(ips), main_addr=ips[0])


def training_argv(
    overrides: Sequence[str],
    log_dir: str,
    data_dir: str,
    default_overrides: Sequence[str],
    resume_from: Path | None,
) -> list[str]:
    """The ``python -m emotion.train`` arguments of a run: outputs under ``log_dir``; an explicit resume (the
    checkpoint's path) or an explicit fresh start — never a guess inside the training. Once the run has a
    ``last.ckpt`` of its own (a retry, a rerun) it resumes from that, not from the ``ckpt_path`` it started from."""
    overrides = list(overrides)
    name = run_name_for(overrides)
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    argv = [o for o in default_overrides if o.split("=", 1)[0] not in keys]
    if "data.root" not in keys and not any(o.startswith("experiment=demo") or o == "data=synthetic" for o in overrides):
        argv.append(f"data.root={data_dir}/fer2013")
    argv += [o for o in overrides if not o.startswith("run_name=")]
    argv += [f"run_name={name}", f"paths.log_dir={log_dir}", f"paths.cache_dir={log_dir}/.cache"]
    if resume_from is not None:  # the run's own last.ckpt is newer than any ckpt_path it was started from
        argv = [a for a in argv if a.split("=", 1)[0].lstrip("+~") != "ckpt_path"] + [f"ckpt_path={resume_from}"]
    elif "ckpt_path" not in keys:
        argv.append("ckpt_path=null")
    return argv


def preflight(overrides: Sequence[str], default_overrides: Sequence[str] = ("trainer=gpu",)) -> None:
    """Compose and validate the run's config here, before any GPU is paid for: unknown keys or experiments, bad
    values and a missing distillation teacher fail in seconds. Raises SystemExit with the one-line reason."""
    from emotion.cli import check_overrides, compose_checked
    from emotion.errors import UserError

    check_overrides(list(overrides))
    argv = training_argv(overrides, "/tmp/emotion-preflight", DATA_DIR, default_overrides, None)
    argv = [a for a in argv if not a.startswith(("ckpt_path=", "data.root="))]  # paths that exist only remotely
    try:
        cfg = compose_checked(argv, "train", hydra_node=False)  # the project's conf/, as the container's
        import hydra

        from emotion.cli import check_config
        from emotion.training.runs import check_optimizer, check_resumable

        check_config(cfg, data=False)  # the data set lives in the Volume, not here
        ckpt = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "ckpt_path"), "")
        if Path(ckpt).expanduser().is_file():  # a checkpoint of this machine (uploaded with the run)
            check_resumable(str(Path(ckpt).expanduser()))
        hydra.utils.instantiate(cfg.data)  # validates data options (reads nothing)
        check_optimizer(hydra.utils.instantiate(cfg.model))
    except UserError as exc:
        raise SystemExit(f"error: the run was not started: {exc}") from None
    except Exception as exc:  # Hydra, OmegaConf and our validation raise many types: all are the user's to fix
        reason = exc.__cause__ or exc
        raise SystemExit(f"error: the run was not started: {type(reason).__name__}: {reason}") from None


#: Settings whose value names files the training reads. The container holds only the image's emotion/ and conf/
#: and the Volumes, so a file of this machine given on the command line travels with the run (:func:`input_files`).
INPUT_FILE_SETTINGS = (
    "ckpt_path",
    "data.exclude",
    "data.drop_labels",
    "data.views",
    "model.distill.teacher",
    "model.init_from",
)
INPUTS = "inputs"  # the runs Volume's folder of uploaded input files


def input_files(overrides: Sequence[str]) -> tuple[list[str], dict[str, Path]]:
    """The overrides with every input file of this machine replaced by its place in the runs Volume,
    ``/runs/inputs/<content digest>/<name>`` (the same content, the same place: the run name derived from the
    overrides stays, so a rerun resumes; changed content is a new run), and the uploads that takes (Volume path →
    local file). A shipped model's name and a path already in a Volume stay; a data file that is not here fails."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out, uploads = [], {}
    parser = OverridesParser.create()
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or key.lstrip("+~") not in INPUT_FILE_SETTINGS:
            out.append(override)
            continue
        value = parser.parse_override(override).value()  # Hydra's reading: quotes removed, a list as a list
        if value is None or value == "":
            out.append(override)
            continue
        listed = isinstance(value, list)
        items = [str(v) for v in value] if listed else [str(value)]
        placed = []
        for item in items:
            path = Path(item).expanduser()
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                uploads[f"{INPUTS}/{digest}/{path.name}"] = path
                placed.append(f"{RUNS_DIR}/{INPUTS}/{digest}/{path.name}")
            elif item.startswith((f"{RUNS_DIR}/", f"{DATA_DIR}/")) or _a_name_not_a_path(key.lstrip("+~"), item):
                placed.append(item)  # in a Volume already, `last`, or a shipped model's name (preflight checked it)
            else:
                resume = "; ckpt_path=last resumes the run's own last.ckpt" if key.lstrip("+~") == "ckpt_path" else ""
                raise SystemExit(
                    f"error: {key}={item}: no such file here; a Modal run reads the files its command names from "
                    f"this machine (uploaded with the run) or from a Volume path ({RUNS_DIR}/…, {DATA_DIR}/…){resume}"
                )
        out.append(f"{key}=[{','.join(placed)}]" if listed else f"{key}={placed[0]}")
    return out, uploads


def _a_name_not_a_path(setting: str, value: str) -> bool:
    """``ckpt_path=last`` and a shipped model's name (``model.…``) name no file; a data setting always names one."""
    return value == "last" if setting == "ckpt_path" else setting.startswith("model.")


def upload_inputs(uploads: dict[str, Path], volume: Any = None) -> None:
    """Put the run's input files into the runs Volume (before the run starts: its container reloads the Volume)."""
    if not uploads:
        return
    volume = volume if volume is not None else runs_volume
    try:
        with volume.batch_upload(force=True) as batch:
            for dest, src in sorted(uploads.items()):
                batch.put_file(str(src), f"/{dest}")
    except Exception as exc:  # Modal's client raises its own types (AuthError, ConnectionError, …)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SystemExit(
            f"error: could not upload the run's input files to Modal ({first}); authenticate with `modal setup` first"
        ) from None
    for dest, src in sorted(uploads.items()):
        print(f"uploaded {src} to volume '{RUNS_VOLUME}' at /{dest}")


def changed_checkpoints(ckpt_dir: Path, seen: dict[str, int]) -> list[str]:
    """Checkpoint files that appeared or changed since the last call (complete files: the writer renames a temp)."""
    changed = []
    for path in sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []:
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:  # replaced between glob and stat
            continue
        if seen.get(path.name) != stamp:
            seen[path.name] = stamp
            changed.append(path.name)
    return changed


#: Words in a failed training's error output that mean the machine, the network or the storage failed, not the
#: run: such a failure is raised so that Modal's retry policy starts the run again (it resumes from last.ckpt).
TRANSIENT_MARKERS = (
    "NCCL",
    "DistNetworkError",
    "DistBackendError",
    "Connection closed by peer",
    "Connection reset by peer",
    "CUDA error: an illegal memory access",
    "CUDA error: unspecified launch failure",
    "uncorrectable ECC error",
    "Input/output error",
    "Stale file handle",
)
#: Signals that kill a training process when hardware or a collective's watchdog gives up (NCCL aborts).
TRANSIENT_SIGNALS = (signal.SIGABRT, signal.SIGBUS)


class TrainingFailed(RuntimeError):
    """A training subprocess that exited with an error: ``transient`` when retrying can help."""

    def __init__(self, run_name: str, returncode: int, output_tail: str) -> None:
        self.run_name, self.returncode = run_name, returncode
        lines = [line.strip() for line in output_tail.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        self.reason = (errors or lines or [f"exit status {returncode}"])[-1]
        by_signal = returncode < 0 and -returncode in TRANSIENT_SIGNALS
        self.transient = by_signal or any(marker in output_tail for marker in TRANSIENT_MARKERS)
        kind = "transient: retried, resuming from last.ckpt" if self.transient else "deterministic: not retried"
        super().__init__(f"training of run '{run_name}' failed (exit status {returncode}; {kind}): {self.reason}")


def _pump(stream: Any, sink: Any, tail: collections.deque) -> None:
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        tail.append(line)


def train_job(
    overrides: Sequence[str],
    runs_dir: str = RUNS_DIR,
    data_dir: str = DATA_DIR,
    volume: Any = None,
    default_overrides: Sequence[str] = ("trainer=gpu",),
    poll_s: float | None = None,
    grace_s: float = 300.0,
    cwd: str | Path = REMOTE_ROOT,
    node: Node | None = None,
) -> dict[str, Any]:
    """Run ``python -m emotion.train`` as a subprocess (Lightning's DDP launcher re-runs that module per rank) with
    outputs under ``runs_dir``, committing ``volume`` after every checkpoint written and at the end.

    The run resumes from its ``last.ckpt`` in ``runs_dir`` when there is one. On a cluster's other machines
    (``node.rank`` > 0) logs go to local disk and nothing is committed: rank 0 writes the run. Returns the run's
    ``metrics.json`` (plus ``run_name`` and ``run_dir``); raises :class:`TrainingFailed` when the training fails.
    """
    name = run_name_for(overrides)
    run_dir = Path(runs_dir) / "train" / "runs" / name
    last = run_dir / "checkpoints" / "last.ckpt"
    resume_from = last if last.is_file() else None
    writer = node is None or node.rank == 0
    log_dir = runs_dir if writer else str(Path(tempfile.gettempdir()) / f"emotion-node{node.rank}")
    argv = training_argv(overrides, log_dir, data_dir, default_overrides, resume_from)
    env = {**os.environ, **(node.env() if node else {})}
    given = next((a for a in argv if a.startswith("ckpt_path=") and a != "ckpt_path=null"), None)
    print(f"[emotion] run '{name}': {'resuming from ' + given.split('=', 1)[1] if given else 'fresh start'}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "emotion.train", *argv], cwd=str(cwd), env=env, stderr=subprocess.PIPE, text=True
    )
    tail: collections.deque[str] = collections.deque(maxlen=200)
    pump = threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, tail), daemon=True)
    pump.start()
    seen: dict[str, int] = {}
    changed_checkpoints(run_dir / "checkpoints", seen)  # a resumed run's old files are not news
    # The epoch's last.ckpt is written after its best-so-far file: commit when last.ckpt changes (the other files of
    # that epoch are on disk by then); a run that writes no last.ckpt is committed `grace_s` after its other files.
    other_since: float | None = None
    volume = volume if writer else None
    try:
        while proc.poll() is None:
            time.sleep(COMMIT_POLL_S if poll_s is None else poll_s)
            changed = changed_checkpoints(run_dir / "checkpoints", seen)
            if "last.ckpt" in changed or (other_since is not None and time.monotonic() - other_since > grace_s):
                if volume is not None:
                    volume.commit()  # safe with the run's log files open; only reload() refuses open files
                other_since = None
            elif changed and other_since is None:
                other_since = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
        pump.join(timeout=10)
        if volume is not None:
            volume.commit()  # whatever was written, even on failure
    if proc.returncode != 0:
        raise TrainingFailed(name, proc.returncode, "".join(tail))
    if not writer:
        return {"run_name": name, "node_rank": node.rank}
    report = json.loads((run_dir / "metrics.json").read_text())
    return {"run_name": name, "run_dir": str(run_dir), **report}


def train_in_container(overrides: Sequence[str], node: Node | None = None) -> dict[str, Any]:
    """The body of every training function: reload the runs Volume, train (resuming), classify a failure.

    A transient failure is raised (Modal's retry policy runs the input again, which resumes from the committed
    ``last.ckpt``); a deterministic one is returned as ``{"status": "failed", …}`` so that it is paid once."""
    runs_volume.reload()  # the newest committed checkpoints; nothing of the Volume is open yet
    try:
        report = train_job(overrides, RUNS_DIR, DATA_DIR, runs_volume, cwd=REMOTE_ROOT, node=node)
    except TrainingFailed as exc:
        print(f"[emotion] {exc}", file=sys.stderr)
        if exc.transient:
            raise
        return {"status": "failed", "run_name": exc.run_name, "error": str(exc)}
    return {"status": "ok", **report}


def expand_grid(sweep_args: Sequence[str]) -> list[list[str]]:
    """Hydra's own sweep syntax (``a=1,2``, ``b=[1,2]`` kept whole, ``range(1,4)``, ``choice(x,y)``) → jobs."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(sweep_args))
    except Exception as exc:  # hydra's OverrideParseException
        raise SystemExit(f"error: cannot parse the sweep overrides: {exc}") from None
    axes = []
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            axes.append([o.input_line])
        elif o.is_interval_sweep():
            raise SystemExit(f"error: {o.input_line}: interval() needs a sampler; use hparams_search=optuna locally")
        else:
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
    return [list(combo) for combo in itertools.product(*axes)]


def run_sweep(
    sweep_args: Sequence[str], launch: Callable[[list[tuple[list[str]]]], Any], metric: str = "val/acc"
) -> list[dict[str, Any]]:
    """Fan the grid out through ``launch`` (``train.starmap`` remotely, a local loop in tests); the jobs as rows of
    ``emotion.training.sweep_report`` (the local sweeps' report), best first."""
    from emotion.training.sweep_report import job_row, rank

    jobs = expand_grid(sweep_args)
    rows = []
    for i, (overrides, result) in enumerate(zip(jobs, launch([(o,) for o in jobs]))):
        if isinstance(result, Exception):
            rows.append(job_row(f"job {i}", overrides, None, str(result)))
        elif result.get("status", "ok") != "ok":
            rows.append(job_row(f"job {i}", overrides, None, str(result.get("error"))))
        else:
            rows.append({**job_row(Path(result["run_dir"]).name, overrides, result), "run_dir": result["run_dir"]})
    return rank(rows, metric)


class EventMirror:
    """Copies the runs Volume's TensorBoard event files to local disk, appending only the new bytes.

    TensorBoard keeps the files it reads open, and a Volume refuses ``reload()`` while any of its files is open, so a
    TensorBoard reading the Volume itself never sees a later epoch. Here TensorBoard reads the mirror; the Volume's
    files are open only during :meth:`sync`, in the thread that also reloads it."""

    def __init__(self, volume: Any, runs_dir: str | Path, mirror_dir: str | Path) -> None:
        self.volume, self.runs_dir, self.mirror_dir = volume, Path(runs_dir), Path(mirror_dir)
        self.reload_errors = 0

    def sync(self) -> int:
        """Reload the Volume and bring the mirror up to date; returns how many files grew."""
        try:
            self.volume.reload()
        except Exception as exc:  # noqa: BLE001 - reported, and the next sync tries again
            self.reload_errors += 1
            print(f"[tensorboard] reloading the runs Volume failed ({exc}); showing what was there", file=sys.stderr)
        grown = 0
        for src in sorted((self.runs_dir / "train").rglob("events.out.tfevents.*")):
            dst = self.mirror_dir / src.relative_to(self.runs_dir)
            size, have = src.stat().st_size, dst.stat().st_size if dst.exists() else 0
            if size < have:  # rewritten: start over
                dst.unlink()
                have = 0
            if size > have:
                dst.parent.mkdir(parents=True, exist_ok=True)
                with src.open("rb") as fin, dst.open("ab") as fout:
                    fin.seek(have)
                    shutil.copyfileobj(fin, fout)
                grown += 1
        return grown

    def keep_syncing(self, every_s: float) -> threading.Thread:
        def loop() -> None:
            while True:
                time.sleep(every_s)
                self.sync()

        thread = threading.Thread(target=loop, name="event-mirror", daemon=True)
        thread.start()
        return thread


def tensorboard_app(runs_dir: str | Path, mirror_dir: str | Path, volume: Any, refresh_s: float) -> Callable:
    """TensorBoard's WSGI app over a mirror of the runs Volume: an epoch committed after the board started shows up
    within ``refresh_s`` (the mirror syncs and TensorBoard reloads every half interval)."""
    from tensorboard.backend.application import TensorBoardWSGIApp
    from tensorboard.program import TensorBoard

    mirror = EventMirror(volume, runs_dir, mirror_dir)
    mirror.sync()
    mirror.keep_syncing(refresh_s / 2)
    board = TensorBoard()
    board.configure(logdir=str(mirror_dir), reload_interval=refresh_s / 2, load_fast="false")
    provider, multiplexer = board._make_data_provider()
    return TensorBoardWSGIApp(board.flags, board.plugin_loaders, provider, board.assets_zip_provider, multiplexer)


# ----------------------------------------------------------------------------- Modal functions
def train_options(n_gpus: int) -> dict[str, Any]:
    """One training function's Modal settings: preemption restarts the input by itself; the retry policy starts it
    again after the timeout (a fresh timeout per attempt) or a transient fault, resuming from last.ckpt."""
    return {
        "image": train_image,
        "volumes": {DATA_DIR: data_volume, RUNS_DIR: runs_volume},
        "secrets": secrets,
        "gpu": gpu_spec(n_gpus),
        "timeout": TIMEOUT_S,
        "retries": modal.Retries(max_retries=MAX_RETRIES, backoff_coefficient=1.0, initial_delay=10.0),
        "single_use_containers": True,  # one input per container
    }


def train(overrides: list[str]) -> dict[str, Any]:
    """Train one run on one machine (1 to 8 GPUs; the same body for each GPU count)."""
    return train_in_container(overrides)


_train_body = train
train = app.function(**train_options(1))(_train_body)
#: The training function for each GPU count of one machine (the same body, registered once per count).
TRAIN_ON_GPUS = {
    1: train,
    **{n: app.function(name=f"train_{n}_gpus", **train_options(n))(_train_body) for n in GPU_COUNTS[1:]},
}

if NODES > 1:

    @app.function(**train_options(NODE_GPUS))
    @modal.clustered(size=NODES)
    def train_cluster(overrides: list[str]) -> dict[str, Any]:
        """Train one run on a cluster of NODES machines: each starts its own ranks, rank 0's machine writes."""
        return train_in_container(overrides, node=this_node())


@app.function(image=tensorboard_image, volumes={RUNS_DIR: runs_volume}, max_containers=1)
@modal.concurrent(max_inputs=100)
@modal.wsgi_app(requires_proxy_auth=os.environ.get("EMOTION_TENSORBOARD_PUBLIC") != "1")
def tensorboard():
    """TensorBoard over the runs Volume (private by default); new epochs appear within the refresh interval."""
    return tensorboard_app(RUNS_DIR, TENSORBOARD_MIRROR, runs_volume, TENSORBOARD_REFRESH_S)


def _function_for(n_gpus: int) -> Any:
    return train_cluster if NODES > 1 else TRAIN_ON_GPUS[n_gpus]


def launched_detached(argv: Sequence[str] | None = None) -> bool:
    """Whether ``modal run`` was given ``--detach``/``-d`` (before this file's name: later words are ours)."""
    argv = list(sys.argv if argv is None else argv)
    if "run" not in argv:
        return False
    options = []
    for a in argv[argv.index("run") + 1 :]:
        if a.endswith(".py") or ".py::" in a:
            break
        options.append(a)
    return "--detach" in options or "-d" in options


def _where(name: str, call_id: str) -> str:
    app_id = getattr(app, "app_id", None) or "APP_ID"
    return (
        f"  function call: {call_id}\n"
        f"  follow logs:   modal app logs {app_id}\n"
        f"  checkpoints:   volume '{RUNS_VOLUME}', train/runs/{name}/checkpoints (committed after every epoch)\n"
        f"  fetch:         modal volume get {RUNS_VOLUME} train/runs/{name} ./logs/modal/{name}\n"
        f"  resume:        rerun the same command (same run name → continues from last.ckpt)"
    )


DETACH_HINT = (
    "warning: without --detach this run stops when this terminal closes or loses its connection; "
    "for anything longer than a few minutes use `modal run --detach modal_app.py …`"
)


def _start(args: Sequence[str]) -> tuple[str, Any]:
    n_gpus, overrides = split_gpus(args, NODES)
    preflight(overrides)
    overrides, uploads = input_files(overrides)
    upload_inputs(uploads)
    name = run_name_for(overrides)
    where = f"{NODES} machines x {gpu_spec(n_gpus)}" if NODES > 1 else str(gpu_spec(n_gpus))
    print(f"training run '{name}' on {where} with overrides: {' '.join(overrides) or '(none)'}")
    call = _function_for(n_gpus).spawn([*overrides, f"run_name={name}"])
    print(_where(name, call.object_id))
    return name, call


def _report(result: dict[str, Any]) -> None:
    if result.get("status", "ok") != "ok":
        raise SystemExit(f"error: {result.get('error')}")
    print(json.dumps({k: v for k, v in result["metrics"].items() if k.endswith(("acc", "f1"))}, indent=1))


def _train_and_wait(args: Sequence[str]) -> None:
    if not launched_detached():
        print(DETACH_HINT, file=sys.stderr)
    _name, call = _start(args)
    _report(call.get())


def _launch(args: Sequence[str]) -> None:
    if not launched_detached():
        raise SystemExit(
            "error: launch returns at once, and an app started without --detach stops with it (the run would be "
            "cancelled): use `modal run --detach modal_app.py launch …`"
        )
    _start(args)


def _sweep(args: Sequence[str]) -> None:
    if not launched_detached():
        print(DETACH_HINT, file=sys.stderr)
    if NODES > 1:
        raise SystemExit("error: a sweep runs each job on one machine; unset EMOTION_NODES (gpus=N works)")
    n_gpus, sweep_args = split_gpus(args, NODES)
    jobs = expand_grid(sweep_args)
    for job in jobs:
        preflight(job)
    print(f"{len(jobs)} jobs, at most {MAX_CONTAINERS} at once (EMOTION_MAX_CONTAINERS)")
    fn = _function_for(n_gpus).with_options(max_containers=MAX_CONTAINERS)
    from emotion.training.sweep_report import markdown

    def launch(jobs_args: list[tuple[list[str]]]) -> Any:
        shipped = [input_files(overrides) for (overrides,) in jobs_args]
        upload_inputs({dest: src for _, uploads in shipped for dest, src in uploads.items()})
        return fn.starmap([(overrides,) for overrides, _ in shipped], return_exceptions=True)

    results = run_sweep(sweep_args, launch)
    print(markdown(results, "val/acc"))


def upload(args: Sequence[str], volume: Any = None) -> str:
    """Copy a FER2013 folder (or fer2013.csv) into the data Volume; needs no image and starts no container."""
    src = Path(args[0] if args else "data/fer2013")
    dest = args[1] if len(args) > 1 else "fer2013"
    if not src.exists():
        raise SystemExit(f"error: {src} does not exist; pass the Kaggle-layout folder or fer2013.csv")
    volume = volume if volume is not None else data_volume
    try:
        with volume.batch_upload(force=True) as batch:
            if src.is_dir():
                batch.put_directory(str(src), f"/{dest}")
            else:
                batch.put_file(str(src), f"/{dest}/{src.name}")
    except Exception as exc:  # Modal's client raises its own types (AuthError, ConnectionError, …)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SystemExit(f"error: could not upload to Modal ({first}); authenticate with `modal setup` first") from None
    return f"uploaded {src} to volume '{DATA_VOLUME}' at /{dest}; training reads data.root={DATA_DIR}/{dest}"


COMMANDS = {"train": _train_and_wait, "launch": _launch, "sweep": _sweep}


@app.local_entrypoint()
def main(*args: str) -> None:
    """[train] OVERRIDES… | launch OVERRIDES… | sweep OVERRIDES… (Hydra overrides; gpus=N for DDP on N GPUs).

    train (the default): run and wait; launch: spawn and return; sweep: one GPU job per grid point, at most
    EMOTION_MAX_CONTAINERS at once. Give `modal run` --detach so that the run outlives this terminal. Upload data
    with `python modal_app.py upload DIR`.
    """
    if args and args[0] == "upload":
        raise SystemExit("error: upload runs without `modal run`: python modal_app.py upload DIR")
    if args and args[0] in COMMANDS:
        COMMANDS[args[0]](args[1:])
    else:
        _train_and_wait(args)


USAGE = f"""usage:
  modal run --detach modal_app.py [train] OVERRIDES…  run and wait (Hydra overrides of python -m emotion.train)
  modal run --detach modal_app.py gpus=N OVERRIDES…   DDP on N GPUs of one machine (N: 1, 2, 4 or 8)
  EMOTION_NODES=M modal run --detach modal_app.py …   DDP on a cluster of M machines x EMOTION_NODE_GPUS GPUs
  modal run --detach modal_app.py launch OVERRIDES…   spawn, print the call id, return
  modal run --detach modal_app.py sweep OVERRIDES…    a GPU job per grid point, ≤ {MAX_CONTAINERS} at once
  python modal_app.py upload DIR [DEST]               copy FER2013 into the '{DATA_VOLUME}' Volume (no image build)
  modal deploy modal_app.py                           TensorBoard over the '{RUNS_VOLUME}' Volume
--detach keeps the run going when this terminal closes; without it the run stops with the terminal.
(`modal run modal_app.py --help` cannot list these: Modal shows no help for an entrypoint taking *args)"""


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "upload":
        print(upload(sys.argv[2:]))
    elif len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help", "help"):
        print(USAGE)
    else:
        raise SystemExit(USAGE)
