"""The plumbing of a training run: instantiation, resume, hyperparameters, the run report (the light part that
every entry point needs before any heavy import is :mod:`emotion.cli`)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from emotion.atomic import save_figure, write_json
from emotion.errors import ModelFileError, UserError
from emotion.training.callbacks import ResumeCheck
from emotion.training.precision import cpu_has_native_bf16
from emotion.training.reports import confusion_matrix_figure, curves_figure, hardware

log = logging.getLogger(__name__)

PUBLISHED_SEED_ACC = 0.632  # the Keras original of EmotionCNN after 50 epochs


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def check_optimizer(model: L.LightningModule) -> None:
    """Build the configured optimizer on a dummy parameter: a bad lr or weight decay fails now, not after the data."""
    factory = getattr(model, "optimizer_factory", None)
    if factory is None:
        return
    import torch

    try:
        factory(params=[torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as exc:
        raise UserError(f"model.optimizer: {exc}; fix it in model.optimizer (e.g. model.optimizer.lr=1e-3)") from None


def check_precision(trainer_cfg: DictConfig) -> None:
    """bf16 on a CPU without native bf16 instructions (AVX512-BF16 or AMX) is emulated: slower than fp32, so say so.
    With them, ``bf16-mixed`` trains ~1.8x faster than float32 (``experiments/throughput/``)."""
    import torch

    precision = str(trainer_cfg.get("precision", ""))
    on_cpu = trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available()
    if on_cpu and precision.startswith("bf16") and not cpu_has_native_bf16():
        log.warning(
            "trainer.precision=%s on a CPU without native bf16 (AVX512-BF16 or AMX): it is emulated and slower than "
            "float32 here; add trainer.precision=32-true",
            precision,
        )


def instantiate_all(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, list, list]:
    """The run's objects from a config that ``emotion.cli.check_config`` has passed (the entry point checks it
    before torch is imported); what only a built object can tell is checked here."""
    check_precision(cfg.trainer)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    check_optimizer(model)
    callbacks = [*instantiate_list(cfg.get("callbacks")), ResumeCheck(run_hparams(cfg))]
    return datamodule, model, callbacks, instantiate_list(cfg.get("logger"))


def resolve_ckpt_path(ckpt_path: str | None, out_dir: Path) -> str | None:
    """``last`` → this run's ``checkpoints/last.ckpt``, which must exist; a path must exist too.

    A fresh start (no ``ckpt_path``) is refused in a run directory that already holds checkpoints: the new run's
    best/last files would sit beside the old run's and be mistaken for them.
    """
    if not ckpt_path:
        stale = sorted(p.name for p in (out_dir / "checkpoints").glob("*.ckpt"))
        if stale:
            raise UserError(
                f"{out_dir} already holds checkpoints of an earlier run ({', '.join(stale[:3])}"
                f"{', …' if len(stale) > 3 else ''}): resume it with ckpt_path=last, or start afresh under another "
                "run_name (or delete that folder)"
            )
        return None
    if ckpt_path == "last":
        last = out_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            return str(last)
        raise UserError(
            f"ckpt_path=last: nothing to resume under run_name={out_dir.name} ({last} does not exist); start the run "
            "without ckpt_path, or give the run_name of a run that has checkpoints"
        )
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path} does not exist; pass a .ckpt file, 'last', or null")
    check_resumable(ckpt_path)
    return ckpt_path


def check_resumable(path: str) -> None:
    """A training checkpoint of ``emotion.train``, loaded the safe way first: a damaged file, a pickle that would
    run code, or a model file that holds no training state is refused in one line before Lightning opens it."""
    from emotion.models.checkpoint import read_checkpoint

    hint = "to start a training from a model's weights, use model.init_from=PATH instead"
    try:
        state = read_checkpoint(path)
    except ModelFileError as exc:
        raise UserError(f"ckpt_path: {exc} ({hint})") from None
    if not isinstance(state, dict) or not {"state_dict", "epoch", "optimizer_states"} <= state.keys():
        raise UserError(
            f"ckpt_path={path} holds no training state to resume (not a checkpoint of emotion.train); {hint}"
        )


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True, throw_on_missing=False
    )
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "hydra":
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node if isinstance(node, (int, float, str, bool)) or node is None else str(node)

    walk("", container)
    return out


#: What a run's hyperparameters are: the data and model groups, and these few trainer settings and top-level keys.
HPARAM_KEYS = ("seed", "trainer.max_epochs", "trainer.precision", "trainer.gradient_clip_val", "trainer.devices")
#: Keys of those groups that are plumbing (folders, bookkeeping), not hyperparameters.
NOT_HPARAMS = ("root", "cache_dir", "download", "max_bad_fraction", "pin_memory", "eval_batch_size", "_partial_")
#: Metrics shown in TensorBoard's HPARAMS tab: filled in every epoch (val) and at the end (all).
HP_METRICS = ("val/acc", "val/macro_f1", "test/acc", "test/macro_f1")


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's resolved hyperparameters, flat (``model.optimizer.lr``…): no folders, no class paths — a
    ``_target_`` becomes ``…class`` with the class name alone (``model.optimizer.class: AdamW``)."""
    out: dict[str, Any] = {}
    for key, value in flat_config(cfg).items():
        if not (key.startswith(("data.", "model.")) or key in HPARAM_KEYS):
            continue
        if key.split(".")[-1] in NOT_HPARAMS:
            continue
        if key.endswith("._target_"):
            key, value = key[: -len("_target_")] + "class", str(value).rsplit(".", 1)[-1]
        out[key] = value
    return out


def log_hyperparameters(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Log the hyperparameters at fit start, so every run — finished, running or crashed — is in TensorBoard's
    HPARAMS tab; its metrics (``hp/…``) are filled in every epoch and at the end."""
    params = run_hparams(cfg)
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(params, metrics={f"hp/{k}": float("nan") for k in HP_METRICS})
        else:
            lg.log_hyperparams(params)


def overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def epochs_by_precision(history: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the run's epochs trained in each precision (rows from before the history kept it: ``unknown``)."""
    return dict(Counter(str(row.get("precision", "unknown")) for row in history))


def time_to_accuracy(history: list[dict[str, Any]], target: float) -> float | None:
    """Minutes of training until val/acc first reached ``target`` (None if it never did)."""
    for row in history:
        if row.get("val/acc", 0.0) >= target:
            return round(row["elapsed_s"] / 60, 2)
    return None


def write_run_report(
    cfg: DictConfig,
    out_dir: Path,
    trainer: L.Trainer,
    datamodule: Any,
    model: Any,
    metrics: dict[str, float],
    confusion: dict[str, list[list[int]]],
    best_ckpt: str,
    history: list[dict[str, Any]],
    train_time_s: float | None,
    wall_time_s: float,
) -> dict[str, Any]:
    names = list(model.class_names)
    report: dict[str, Any] = {
        "run_dir": str(out_dir),
        "tags": list(cfg.get("tags") or []),
        "overrides": overrides(),
        "class_names": names,
        "model_spec": model.net.spec(),
        "split_protocol": datamodule.info.get("split_protocol"),
        "data": {k: v for k, v in datamodule.info.items() if k != "split_protocol"},
        "metrics": metrics,
        "tta": model.tta,
        "precision": str(trainer.precision),  # as resolved: bf16 only where native (emotion/training/precision.py)
        "epochs_by_precision": epochs_by_precision(history),  # two entries: resumed on other hardware
        # the settings a resume changed, and from which epoch (emotion.training.callbacks.ResumeCheck)
        "resume_changes": next((c.changes for c in trainer.callbacks if isinstance(c, ResumeCheck)), []),
        "best_checkpoint": best_ckpt,
        "epochs_trained": trainer.current_epoch,
        "global_step": trainer.global_step,
        "history": history,
        "minutes_to_published_acc": time_to_accuracy(history, PUBLISHED_SEED_ACC),
        "train_time_s": round(train_time_s, 1) if train_time_s is not None else None,
        "wall_time_s": round(wall_time_s, 1),
        "hardware": hardware(),
    }
    for stage, cm in confusion.items():  # per-class recall as logged, confusion matrix from EvalResults
        recall = {n: metrics[f"{stage}/recall_{n}"] for n in names if f"{stage}/recall_{n}" in metrics}
        report[stage] = {"recall": recall, "confusion_matrix": cm}
        title = f"{stage}: acc {metrics.get(f'{stage}/acc', float('nan')):.4f}"
        save_figure(confusion_matrix_figure(cm, names, title), out_dir / f"confusion_{stage}.png")
    if history:
        save_figure(curves_figure(history, PUBLISHED_SEED_ACC), out_dir / "curves.png")
    write_json(report, out_dir / "metrics.json")
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_metrics({f"hp/{k}": metrics[k] for k in HP_METRICS if k in metrics}, step=trainer.global_step)
    log.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
    log.info("run directory: %s", out_dir)
    return report
