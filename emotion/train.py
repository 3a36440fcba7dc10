"""Train (and test) a model: ``python -m emotion.train experiment=baseline``; sweeps with ``-m``."""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import emotion.stack  # noqa: F401  (first: a one-line error in a serving install)

import hydra
from omegaconf import DictConfig

from emotion.cli import CONF_DIR, check_config, fail_cleanly, preflight, route_lightning_logs
from emotion.errors import UserError

log = logging.getLogger(__name__)
# Our Hydra plugins (the Optuna sweeper) join Hydra's hydra_plugins namespace from here.
sys.path.append(str(Path(__file__).resolve().parent / "_plugins"))


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then validate and test the best checkpoint; write metrics.json and figures into the run directory."""
    t0 = time.perf_counter()
    check_config(cfg)  # before torch and Lightning are imported: a bad value answers in about a second
    import lightning as L

    route_lightning_logs()

    from emotion.training.callbacks import EvalResults, MetricsHistory
    from emotion.training.runs import instantiate_all, log_hyperparameters, resolve_ckpt_path, write_run_report

    L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir) if cfg.get("train") else None
    datamodule, model, callbacks, loggers = instantiate_all(cfg)  # validates every value before any training
    evals = next((c for c in callbacks if isinstance(c, EvalResults)), None)
    if evals is None:  # the run report needs the confusion matrices, even with callbacks=none
        callbacks.append(evals := EvalResults(figures=False))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_hyperparameters(cfg, trainer)

    if cfg.get("train"):
        log.info("fitting%s", f" (resuming from {ckpt_path})" if ckpt_path else "")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)

    # Snapshot now: validate/test with ckpt_path restore callback states from that (older) checkpoint.
    history_cb = next((c for c in trainer.callbacks if isinstance(c, MetricsHistory)), None)
    history = list(history_cb.history) if history_cb else []
    train_time_s = history_cb.elapsed() if history_cb else None

    best_cb = next((c for c in trainer.checkpoint_callbacks if c.monitor), None)
    best = best_cb.best_model_path if best_cb else ""
    ckpt = best or None
    if not best:
        log.warning("no best checkpoint found; evaluating the current weights")
    elif trainer.num_nodes > 1:  # the machines of a cluster share no disk: only rank 0's holds the checkpoint
        share_weights(trainer, model, best)
        ckpt = None
    results: dict[str, Any] = {}
    results.update(trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)[0])
    confusion = {"val": evals.results["val"]["confusion_matrix"]}
    if cfg.get("test"):
        results.update(trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)[0])
        confusion["test"] = evals.results["test"]["confusion_matrix"]
    metrics = {k: float(v) for k, v in results.items()}
    if trainer.is_global_zero:  # one report per run, however many processes trained it
        write_run_report(
            cfg,
            out_dir,
            trainer,
            datamodule,
            model,
            metrics,
            confusion,
            best,
            history,
            train_time_s,
            time.perf_counter() - t0,
        )
    return metrics


def share_weights(trainer: Any, model: Any, path: str) -> None:
    """Load a checkpoint's weights on global rank 0 and send them to every rank."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"] if trainer.is_global_zero else None
    model.load_state_dict(trainer.strategy.broadcast(state))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric`` for sweepers; NaN for a failed job of a sweep (recorded in failed.json)."""
    with fail_cleanly(cfg.paths.output_dir):
        metrics = train(cfg)
        name = cfg.get("optimized_metric")
        if not name:
            return None
        if name not in metrics:
            raise UserError(f"optimized_metric={name!r} is not among the run's metrics: {sorted(metrics)}")
        value = metrics[name]
        return value if math.isfinite(value) else float("nan")
    return float("nan")


def cli() -> None:
    """``python -m emotion.train`` / ``emotion-train``: the checks Hydra cannot make, then Hydra's app."""
    preflight(sys.argv[1:], "train")
    main()


if __name__ == "__main__":
    cli()
