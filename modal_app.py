"""Train on a Modal GPU with exactly the code path of ``python -m emotion.train`` and the same Hydra overrides.

    modal run modal_app.py experiment=baseline trainer.max_epochs=30      # train (resumes if the run exists)
    modal run --detach modal_app.py launch experiment=recipe               # spawn and return at once
    modal run modal_app.py sweep experiment=recipe "model.optimizer.lr=1e-3,3e-3" "data.batch_size=64,128"
    modal run modal_app.py upload ../shared/data/fer2013                   # FER2013 into the data Volume
    modal deploy modal_app.py   # then open the `tensorboard` URL (Modal proxy auth required by default)

Checkpoints, TensorBoard logs and metrics live on the runs Volume; the Volume is committed after every checkpoint
save and at the end, so a preempted or timed-out container loses at most the epoch in progress, and the retry
resumes from ``last.ckpt`` (same run name → same directory). Settings come from environment variables read at
import: ``EMOTION_GPU`` (default ``A100``; e.g. ``A100-80GB``, ``H100,A100`` fallback list, ``A100:4`` with
``trainer=ddp``), ``EMOTION_DATA_VOLUME``, ``EMOTION_RUNS_VOLUME``, ``EMOTION_KAGGLE_SECRET`` (a Modal secret with
``KAGGLE_USERNAME``/``KAGGLE_KEY``), ``EMOTION_TIMEOUT_H``, ``EMOTION_TENSORBOARD_PUBLIC=1``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import modal

HERE = Path(__file__).resolve().parent
APP_NAME = os.environ.get("EMOTION_MODAL_APP", "emotion")
DATA_VOLUME = os.environ.get("EMOTION_DATA_VOLUME", "emotion-data")
RUNS_VOLUME = os.environ.get("EMOTION_RUNS_VOLUME", "emotion-runs")
KAGGLE_SECRET = os.environ.get("EMOTION_KAGGLE_SECRET")  # e.g. "kaggle"; unset: no secret attached
GPU: str | list[str] = [g.strip() for g in os.environ.get("EMOTION_GPU", "A100").split(",")]
GPU = GPU[0] if len(GPU) == 1 else GPU
DATA_DIR, RUNS_DIR = "/data", "/runs"
REMOTE_ROOT = "/root/project"

FUNCTION_OPTIONS: dict[str, Any] = {
    "gpu": GPU,
    "timeout": int(float(os.environ.get("EMOTION_TIMEOUT_H", "12")) * 3600),
    "retries": modal.Retries(max_retries=3, initial_delay=10.0, backoff_coefficient=2.0),
    "single_use_containers": True,  # one input per container: a retry gets a fresh GPU
}

image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("libgl1", "libglib2.0-0")  # OpenCV's runtime libraries
    .pip_install_from_pyproject(str(HERE / "pyproject.toml"), optional_dependencies=["kaggle"])
    .env({"KAGGLEHUB_CACHE": f"{DATA_DIR}/kagglehub", "PYTHONPATH": REMOTE_ROOT})
    .add_local_dir(HERE / "emotion", f"{REMOTE_ROOT}/emotion", ignore=["**/__pycache__", "**/*.pyc"])
    .add_local_dir(HERE / "conf", f"{REMOTE_ROOT}/conf")  # the YAML configs (python sources alone would miss them)
)
data_volume = modal.Volume.from_name(DATA_VOLUME, create_if_missing=True)
runs_volume = modal.Volume.from_name(RUNS_VOLUME, create_if_missing=True)
secrets = [modal.Secret.from_name(KAGGLE_SECRET)] if KAGGLE_SECRET else []

app = modal.App(APP_NAME, image=image)


# ----------------------------------------------------------------------------- plain Python, testable locally
def run_name_for(overrides: Sequence[str]) -> str:
    """The run name: ``run_name=…`` if given, else a stable name derived from the overrides (so reruns resume)."""
    for o in overrides:
        if o.startswith("run_name="):
            return o.split("=", 1)[1]
    exp = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "default")
    digest = hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
    return f"{exp}-{digest}"


_VOLUMES: dict[str, Any] = {}  # name → volume object, for the commit callback built by Hydra


class CommitVolume(L.Callback):
    """Commit the runs Volume once per epoch, after Lightning has written that epoch's checkpoints, and at the end.

    Built by Hydra (``+callbacks.commit_volume``); the volume object is looked up in ``_VOLUMES``.
    """

    def __init__(self, volume_key: str = "runs") -> None:
        self.volume = _VOLUMES[volume_key]
        self.commits = 0

    def _commit(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            self.volume.commit()
            self.commits += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._commit(trainer)  # validation (and ModelCheckpoint's save) ran before this hook

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._commit(trainer)


def train_job(
    overrides: Sequence[str],
    runs_dir: str = RUNS_DIR,
    data_dir: str = DATA_DIR,
    volume: Any = None,
    default_overrides: Sequence[str] = ("trainer=gpu",),
) -> dict[str, Any]:
    """Run ``python -m emotion.train OVERRIDES`` in this process, outputs under ``runs_dir``, resuming if possible.

    Returns the run's ``metrics.json`` (plus ``run_name`` and ``run_dir``).
    """
    from emotion.train import main as train_main

    overrides = list(overrides)
    name = run_name_for(overrides)
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    argv = [o for o in default_overrides if o.split("=", 1)[0] not in keys]
    if "data.root" not in keys and not any(o.startswith("experiment=demo") or o == "data=synthetic" for o in overrides):
        argv.append(f"data.root={data_dir}/fer2013")
    argv += [o for o in overrides if not o.startswith("run_name=")]
    argv += [f"run_name={name}", f"paths.log_dir={runs_dir}", f"paths.cache_dir={runs_dir}/.cache"]
    if "ckpt_path" not in keys:
        argv.append("ckpt_path=last")
    if volume is not None:
        _VOLUMES["runs"] = volume
        argv.append("+callbacks.commit_volume._target_=modal_app.CommitVolume")
        argv.append("+callbacks.commit_volume.volume_key=runs")
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["emotion.train", *argv]
    try:
        train_main()
    except SystemExit as exc:  # fail_cleanly: configuration or data errors
        if exc.code not in (0, None):
            raise RuntimeError(f"training failed: {exc.code}") from None
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        if volume is not None:
            volume.commit()  # whatever was written, even on failure
    run_dir = Path(runs_dir) / "train" / "runs" / name
    report = json.loads((run_dir / "metrics.json").read_text())
    return {"run_name": name, "run_dir": str(run_dir), **report}


def expand_grid(sweep_args: Sequence[str]) -> list[list[str]]:
    """Hydra-style grid: ``["a=1,2", "b=x"]`` → ``[["a=1", "b=x"], ["a=2", "b=x"]]``."""
    axes = []
    for arg in sweep_args:
        key, _, values = arg.partition("=")
        axes.append([f"{key}={v}" for v in values.split(",")] if "," in values else [arg])
    return [list(combo) for combo in itertools.product(*axes)]


def run_sweep(
    sweep_args: Sequence[str], launch: Callable[[list[tuple[list[str]]]], Any], metric: str = "val/acc"
) -> list[dict[str, Any]]:
    """Fan the grid out through ``launch`` (``train.starmap`` remotely, a local loop in tests); best first."""
    jobs = expand_grid(sweep_args)
    results = []
    for overrides, result in zip(jobs, launch([(o,) for o in jobs])):
        if isinstance(result, Exception):
            results.append({"overrides": overrides, "status": f"failed: {result}", "metric": None})
        else:
            value = result["metrics"].get(metric)
            results.append({"overrides": overrides, "status": "ok", "metric": value, "run_dir": result["run_dir"]})
    return sorted(results, key=lambda r: -(r["metric"] if r["metric"] is not None else float("-inf")))


def sweep_table(results: list[dict[str, Any]], metric: str = "val/acc") -> str:
    lines = [f"| rank | overrides | {metric} | status |", "|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        value = f"{r['metric']:.4f}" if r["metric"] is not None else "—"
        lines.append(f"| {i} | {' '.join(r['overrides'])} | {value} | {r['status']} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- Modal functions
@app.function(volumes={DATA_DIR: data_volume, RUNS_DIR: runs_volume}, secrets=secrets, **FUNCTION_OPTIONS)
def train(overrides: list[str]) -> dict[str, Any]:
    os.chdir(REMOTE_ROOT)
    runs_volume.reload()
    return train_job(overrides, volume=runs_volume)


@app.function(volumes={RUNS_DIR: runs_volume}, max_containers=1)
@modal.concurrent(max_inputs=100)
@modal.wsgi_app(requires_proxy_auth=os.environ.get("EMOTION_TENSORBOARD_PUBLIC") != "1")
def tensorboard():
    """TensorBoard over the runs Volume (behind Modal proxy auth unless EMOTION_TENSORBOARD_PUBLIC=1)."""
    from tensorboard.backend.application import TensorBoardWSGIApp
    from tensorboard.program import TensorBoard

    board = TensorBoard()
    board.configure(logdir=RUNS_DIR, reload_interval=30)
    provider, multiplexer = board._make_data_provider()
    return TensorBoardWSGIApp(board.flags, board.plugin_loaders, provider, board.assets_zip_provider, multiplexer)


def _fetch_hint(name: str) -> str:
    return (
        f"results: volume '{RUNS_VOLUME}', train/runs/{name}/\n"
        f"  fetch:  modal volume get {RUNS_VOLUME} train/runs/{name} ./logs/modal/{name}\n"
        f"  resume: rerun the same command (same run name → continues from last.ckpt)"
    )


def _train_and_wait(overrides: Sequence[str]) -> None:
    name = run_name_for(overrides)
    print(f"training run '{name}' on {GPU} with overrides: {' '.join(overrides) or '(none)'}")
    result = train.remote([*overrides, f"run_name={name}"])
    print(json.dumps({k: v for k, v in result["metrics"].items() if k.endswith(("acc", "f1"))}, indent=1))
    print(_fetch_hint(name))


def _launch(overrides: Sequence[str]) -> None:
    name = run_name_for(overrides)
    call = train.spawn([*overrides, f"run_name={name}"])
    print(f"spawned run '{name}' as function call {call.object_id}")
    print(_fetch_hint(name))


def _sweep(sweep_args: Sequence[str]) -> None:
    results = run_sweep(sweep_args, lambda args: train.starmap(args, return_exceptions=True))
    print(sweep_table(results))


def _upload(args: Sequence[str]) -> None:
    src = Path(args[0] if args else "data/fer2013")
    dest = args[1] if len(args) > 1 else "fer2013"
    if not src.exists():
        raise SystemExit(f"error: {src} does not exist; pass the Kaggle-layout folder or fer2013.csv")
    with data_volume.batch_upload(force=True) as batch:
        if src.is_dir():
            batch.put_directory(str(src), f"/{dest}")
        else:
            batch.put_file(str(src), f"/{dest}/{src.name}")
    print(f"uploaded {src} to volume '{DATA_VOLUME}' at /{dest}; training reads data.root={DATA_DIR}/{dest}")


COMMANDS = {"launch": _launch, "sweep": _sweep, "upload": _upload}


@app.local_entrypoint()
def main(*args: str) -> None:
    """``modal run modal_app.py [launch|sweep|upload] [ARGS…]``; without a command: train with Hydra overrides."""
    if args and args[0] in COMMANDS:
        COMMANDS[args[0]](args[1:])
    else:
        _train_and_wait(args)
