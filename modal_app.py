"""Train on Modal GPUs with exactly ``python -m emotion.train`` and the same Hydra overrides.

    modal run modal_app.py experiment=baseline trainer.max_epochs=30      # train (resumes if the run exists)
    modal run modal_app.py gpus=4 experiment=sota                          # DDP on 4 GPUs of one machine
    modal run --detach modal_app.py launch experiment=recipe               # spawn and return at once
    modal run modal_app.py sweep experiment=recipe "model.optimizer.lr=1e-3,3e-3" "data.batch_size=range(64,257,64)"
    python modal_app.py upload ../shared/data/fer2013                      # FER2013 into the data Volume, no build
    modal deploy modal_app.py                                              # TensorBoard over the runs (see README)

Before anything is sent to Modal, the overrides are composed and validated here (unknown keys, unknown experiment,
bad values fail in seconds, for free). In the container, ``python -m emotion.train`` runs as a subprocess, so that
Lightning's DDP launcher re-runs that module for every extra rank; the parent commits the runs Volume right after each
checkpoint file is written (the checkpoint writer renames a complete temp file into place) and at the end. Re-running
the same command resumes from the run's ``last.ckpt`` (same run name → same directory); Modal itself restarts an
input whose container was preempted, so there is no retry policy (a deterministic error would be paid again).

Settings (environment variables read at import): ``EMOTION_GPU`` (default ``A100``; ``A100-80GB``, or a fallback list
``H100,A100``), ``EMOTION_DATA_VOLUME``, ``EMOTION_RUNS_VOLUME``, ``EMOTION_KAGGLE_SECRET`` (a Modal secret with
``KAGGLE_USERNAME``/``KAGGLE_KEY``), ``EMOTION_TIMEOUT_H``, ``EMOTION_MAX_CONTAINERS`` (sweep concurrency, default 4),
``EMOTION_TENSORBOARD_PUBLIC=1``. Only Modal and the standard library are imported here at the top.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import modal

HERE = Path(__file__).resolve().parent
APP_NAME = os.environ.get("EMOTION_MODAL_APP", "emotion")
DATA_VOLUME = os.environ.get("EMOTION_DATA_VOLUME", "emotion-data")
RUNS_VOLUME = os.environ.get("EMOTION_RUNS_VOLUME", "emotion-runs")
KAGGLE_SECRET = os.environ.get("EMOTION_KAGGLE_SECRET")  # e.g. "kaggle"; unset: no secret attached
GPU_TYPES = [g.strip() for g in os.environ.get("EMOTION_GPU", "A100").split(",") if g.strip()]
MAX_CONTAINERS = int(os.environ.get("EMOTION_MAX_CONTAINERS", "4"))
DATA_DIR, RUNS_DIR = "/data", "/runs"
REMOTE_ROOT = "/root/project"
LOCK_FILE = HERE / ".ci" / "modal-requirements.txt"  # the tested versions: `make modal-lock` regenerates it


def gpu_spec(n_gpus: int = 1) -> str | list[str]:
    """``A100`` / ``A100:4``; a fallback list (``H100,A100``) keeps its order."""
    specs = [g if n_gpus == 1 else f"{g}:{n_gpus}" for g in GPU_TYPES]
    return specs[0] if len(specs) == 1 else specs


FUNCTION_OPTIONS: dict[str, Any] = {
    "gpu": gpu_spec(1),
    "timeout": int(float(os.environ.get("EMOTION_TIMEOUT_H", "12")) * 3600),
    "single_use_containers": True,  # one input per container
}

train_image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("libgl1", "libglib2.0-0")  # OpenCV's runtime libraries
    .pip_install_from_requirements(str(LOCK_FILE))
    .pip_install("kagglehub>=0.3,<1")  # downloads FER2013 with the Kaggle secret (not part of the tested lock)
    .env({"KAGGLEHUB_CACHE": f"{DATA_DIR}/kagglehub", "PYTHONPATH": REMOTE_ROOT})
    .add_local_dir(HERE / "emotion", f"{REMOTE_ROOT}/emotion", ignore=["**/__pycache__", "**/*.pyc"])
    .add_local_dir(HERE / "conf", f"{REMOTE_ROOT}/conf")  # the YAML configs (python sources alone would miss them)
)
tensorboard_image = modal.Image.debian_slim(python_version="3.11").pip_install(
    *[line for line in LOCK_FILE.read_text().splitlines() if line.split("==")[0].startswith("tensorboard")]
)
data_volume = modal.Volume.from_name(DATA_VOLUME, create_if_missing=True)
runs_volume = modal.Volume.from_name(RUNS_VOLUME, create_if_missing=True)
secrets = [modal.Secret.from_name(KAGGLE_SECRET)] if KAGGLE_SECRET else []

app = modal.App(APP_NAME)


# ----------------------------------------------------------------------------- plain Python, testable locally
def run_name_for(overrides: Sequence[str]) -> str:
    """The run name: ``run_name=…`` if given, else a stable name derived from the overrides (so reruns resume)."""
    for o in overrides:
        if o.startswith("run_name="):
            return o.split("=", 1)[1]
    exp = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "default")
    digest = hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
    return f"{exp}-{digest}"


def split_gpus(args: Sequence[str]) -> tuple[int, list[str]]:
    """``gpus=N`` (not a Hydra override) → N and the remaining overrides; N > 1 adds ``trainer=ddp`` with N devices."""
    n, rest = 1, []
    for a in args:
        if a.startswith("gpus="):
            value = a.split("=", 1)[1]
            if not value.isdigit() or int(value) < 1:
                raise SystemExit(f"error: gpus={value}: give the number of GPUs of one machine, e.g. gpus=4")
            n = int(value)
        else:
            rest.append(a)
    if n > 1:
        keys = {o.split("=", 1)[0] for o in rest}
        rest = [*(["trainer=ddp"] if "trainer" not in keys else []), *rest, f"trainer.devices={n}"]
    return n, rest


def training_argv(
    overrides: Sequence[str], runs_dir: str, data_dir: str, default_overrides: Sequence[str]
) -> list[str]:
    """The ``python -m emotion.train`` arguments of a run: outputs under ``runs_dir``, resuming from ``last``."""
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
    return argv


def preflight(overrides: Sequence[str], default_overrides: Sequence[str] = ("trainer=gpu",)) -> None:
    """Compose and validate the run's config here, before any GPU is paid for: unknown keys or experiments, bad
    values and a missing distillation teacher fail in seconds. Raises SystemExit with the one-line reason."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from emotion.cli import check_renamed

    check_renamed(list(overrides))
    argv = training_argv(overrides, "/tmp/emotion-preflight", DATA_DIR, default_overrides)
    argv = [a for a in argv if not a.startswith(("ckpt_path=", "data.root="))]  # paths that exist only remotely
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(HERE / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=argv)
        import hydra

        from emotion.cli import check_config
        from emotion.training.runs import check_optimizer

        check_config(cfg, data=False)  # the data set lives in the Volume, not here
        hydra.utils.instantiate(cfg.data)  # validates data options (reads nothing)
        check_optimizer(hydra.utils.instantiate(cfg.model))
    except Exception as exc:  # Hydra, OmegaConf and our validation raise many types: all are the user's to fix
        reason = exc.__cause__ or exc
        raise SystemExit(f"error: the run was not started: {type(reason).__name__}: {reason}") from None
    finally:
        GlobalHydra.instance().clear()


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


def train_job(
    overrides: Sequence[str],
    runs_dir: str = RUNS_DIR,
    data_dir: str = DATA_DIR,
    volume: Any = None,
    default_overrides: Sequence[str] = ("trainer=gpu",),
    poll_s: float = 5.0,
    grace_s: float = 300.0,
    cwd: str | Path = REMOTE_ROOT,
) -> dict[str, Any]:
    """Run ``python -m emotion.train`` as a subprocess (Lightning's DDP launcher re-runs that module per rank) with
    outputs under ``runs_dir``, committing ``volume`` after every checkpoint written and at the end.

    Returns the run's ``metrics.json`` (plus ``run_name`` and ``run_dir``).
    """
    name = run_name_for(overrides)
    argv = training_argv(overrides, runs_dir, data_dir, default_overrides)
    run_dir = Path(runs_dir) / "train" / "runs" / name
    proc = subprocess.Popen([sys.executable, "-m", "emotion.train", *argv], cwd=str(cwd))
    seen: dict[str, int] = {}
    changed_checkpoints(run_dir / "checkpoints", seen)  # a resumed run's old files are not news
    # The epoch's last.ckpt is written after its best-so-far file: commit when last.ckpt changes (the other files of
    # that epoch are on disk by then); a run that writes no last.ckpt is committed `grace_s` after its other files.
    other_since: float | None = None
    try:
        while proc.poll() is None:
            time.sleep(poll_s)
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
        if volume is not None:
            volume.commit()  # whatever was written, even on failure
    if proc.returncode != 0:
        raise RuntimeError(f"training of run '{name}' exited with status {proc.returncode}; its error is above")
    report = json.loads((run_dir / "metrics.json").read_text())
    return {"run_name": name, "run_dir": str(run_dir), **report}


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


class VolumeReloader:
    """Reload a Volume at most every ``every_s`` seconds (per request of a web endpoint). A reload fails while files
    of the Volume are open — TensorBoard reads event files — so a failed reload is retried at the next request."""

    def __init__(self, volume: Any, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.volume, self.every_s, self.clock = volume, every_s, clock
        self.last = float("-inf")

    def maybe_reload(self) -> bool:
        if self.clock() - self.last < self.every_s:
            return False
        try:
            self.volume.reload()
        except Exception:  # open files: try again later
            return False
        self.last = self.clock()
        return True


# ----------------------------------------------------------------------------- Modal functions
@app.function(
    image=train_image,
    volumes={DATA_DIR: data_volume, RUNS_DIR: runs_volume},
    secrets=secrets,
    **FUNCTION_OPTIONS,
)
def train(overrides: list[str]) -> dict[str, Any]:
    runs_volume.reload()  # nothing of the Volume is open yet
    return train_job(overrides, volume=runs_volume)


@app.function(image=tensorboard_image, volumes={RUNS_DIR: runs_volume}, max_containers=1)
@modal.concurrent(max_inputs=100)
@modal.wsgi_app(requires_proxy_auth=os.environ.get("EMOTION_TENSORBOARD_PUBLIC") != "1")
def tensorboard():
    """TensorBoard over the runs Volume, reloaded at most every 30 s as requests come in (private by default)."""
    from tensorboard.backend.application import TensorBoardWSGIApp
    from tensorboard.program import TensorBoard

    board = TensorBoard()
    board.configure(logdir=RUNS_DIR, reload_interval=30)
    provider, multiplexer = board._make_data_provider()
    inner = TensorBoardWSGIApp(board.flags, board.plugin_loaders, provider, board.assets_zip_provider, multiplexer)
    reloader = VolumeReloader(runs_volume)

    def wsgi(environ, start_response):
        reloader.maybe_reload()
        return inner(environ, start_response)

    return wsgi


def _fetch_hint(name: str) -> str:
    return (
        f"results: volume '{RUNS_VOLUME}', train/runs/{name}/\n"
        f"  fetch:  modal volume get {RUNS_VOLUME} train/runs/{name} ./logs/modal/{name}\n"
        f"  resume: rerun the same command (same run name → continues from last.ckpt)"
    )


def _function_for(n_gpus: int):
    return train if n_gpus == 1 else train.with_options(gpu=gpu_spec(n_gpus))


def _train_and_wait(args: Sequence[str]) -> None:
    n_gpus, overrides = split_gpus(args)
    preflight(overrides)
    name = run_name_for(overrides)
    print(f"training run '{name}' on {gpu_spec(n_gpus)} with overrides: {' '.join(overrides) or '(none)'}")
    result = _function_for(n_gpus).remote([*overrides, f"run_name={name}"])
    print(json.dumps({k: v for k, v in result["metrics"].items() if k.endswith(("acc", "f1"))}, indent=1))
    print(_fetch_hint(name))


def _launch(args: Sequence[str]) -> None:
    n_gpus, overrides = split_gpus(args)
    preflight(overrides)
    name = run_name_for(overrides)
    call = _function_for(n_gpus).spawn([*overrides, f"run_name={name}"])
    print(f"spawned run '{name}' as function call {call.object_id}")
    print(_fetch_hint(name))


def _sweep(args: Sequence[str]) -> None:
    n_gpus, sweep_args = split_gpus(args)
    jobs = expand_grid(sweep_args)
    for job in jobs:
        preflight(job)
    print(f"{len(jobs)} jobs, at most {MAX_CONTAINERS} at once (EMOTION_MAX_CONTAINERS)")
    fn = train.with_options(gpu=gpu_spec(n_gpus), max_containers=MAX_CONTAINERS)
    results = run_sweep(sweep_args, lambda jobs_args: fn.starmap(jobs_args, return_exceptions=True))
    print(sweep_table(results))


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
    EMOTION_MAX_CONTAINERS at once. Upload data with `python modal_app.py upload DIR`.
    """
    if args and args[0] == "upload":
        raise SystemExit("error: upload runs without `modal run`: python modal_app.py upload DIR")
    if args and args[0] in COMMANDS:
        COMMANDS[args[0]](args[1:])
    else:
        _train_and_wait(args)


USAGE = f"""usage:
  modal run modal_app.py [train] OVERRIDES…     run and wait (Hydra overrides of python -m emotion.train; gpus=N: DDP)
  modal run --detach modal_app.py launch OVERRIDES…   spawn and return
  modal run modal_app.py sweep OVERRIDES…       a GPU job per grid point (Hydra syntax), ≤ {MAX_CONTAINERS} at once
  python modal_app.py upload DIR [DEST]         copy FER2013 into the '{DATA_VOLUME}' Volume (no image build)
  modal deploy modal_app.py                     TensorBoard over the '{RUNS_VOLUME}' Volume
(`modal run modal_app.py --help` cannot list these: Modal shows no help for an entrypoint taking *args)"""


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "upload":
        print(upload(sys.argv[2:]))
    elif len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help", "help"):
        print(USAGE)
    else:
        raise SystemExit(USAGE)
