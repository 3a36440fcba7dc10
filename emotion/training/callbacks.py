"""Small Lightning callbacks for what Lightning does not log by itself."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from torch.optim.swa_utils import AveragedModel

from emotion.atomic import atomic_write_text
from emotion.data.datamodule import batch_seed
from emotion.training.reports import confusion_matrix_figure, misclassified_figure

log = logging.getLogger(__name__)


def progress_bar(refresh_rate: int = 1, log_refresh_rate: int = 50) -> L.Callback:
    """Rich bars in a terminal; plain TQDM lines every ``log_refresh_rate`` steps when writing to a log file."""
    if sys.stderr.isatty():
        return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=log_refresh_rate)


def batch_size(batch: Any) -> int:
    """Samples in a batch, for Lightning's ``ThroughputMonitor``."""
    return int(batch[0].shape[0])


class BatchSeed(L.Callback):
    """Reseed the global RNGs (dropout, …) before every training batch from (seed, epoch, batch).

    Batch order and augmentation are already functions of (seed, epoch, batch); with this, a run resumed from an
    epoch-boundary checkpoint continues exactly as the uninterrupted run would (bit-identical on CPU). Seeding per
    batch, not per epoch, matters: anything that draws from the global RNG between batches (a DataLoader creating
    its iterator, a validation run) would otherwise shift every later dropout mask of a resumed run.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        L.seed_everything(batch_seed(self.seed, trainer.current_epoch, batch_idx), workers=True, verbose=False)


class EvalResults(L.Callback):
    """The confusion matrix, which faces were right and a few misclassified faces of every validation and test epoch,
    built from what the eval steps return (their probabilities); ``results[stage]`` holds the last epoch's. With
    ``figures``, each validation epoch also draws both into TensorBoard."""

    def __init__(self, figures: bool = True, n_misclassified: int = 32) -> None:
        self.figures, self.n_misclassified = figures, n_misclassified
        self.results: dict[str, dict[str, Any]] = {}
        self._confmat: Any = None
        self._wrong: list[tuple[Any, Any, Any]] = []
        self._right: list[Any] = []

    def _start(self, pl_module: L.LightningModule) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        self._confmat = MulticlassConfusionMatrix(len(pl_module.class_names)).to(pl_module.device)
        self._wrong, self._right = [], []

    def _batch(self, outputs: Any, batch: Any) -> None:
        x, y = batch[0], batch[1]
        self._confmat.update(outputs, y)
        pred = outputs.argmax(1)
        self._right.append((pred == y).cpu())
        room = self.n_misclassified - sum(len(w[0]) for w in self._wrong)
        if room > 0:
            wrong = (pred != y).nonzero().flatten()[:room]
            if len(wrong):
                self._wrong.append((x[wrong].detach().cpu(), y[wrong].cpu(), pred[wrong].cpu()))

    def _end(self, stage: str) -> dict[str, Any]:
        import torch

        images = [torch.cat(t) for t in zip(*self._wrong)] if self._wrong else []
        self.results[stage] = {
            "confusion_matrix": self._confmat.compute().cpu().tolist(),
            "misclassified": images,
            "correct": torch.cat(self._right) if self._right else torch.zeros(0, dtype=torch.bool),  # face by face
        }
        return self.results[stage]

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(outputs, batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end("test")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        result = self._end("val")
        tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if trainer.sanity_checking or not self.figures or tb is None:
            return
        names = pl_module.class_names
        tb.experiment.add_figure(
            "val/confusion_matrix",
            confusion_matrix_figure(result["confusion_matrix"], names),
            global_step=trainer.current_epoch,
        )
        if result["misclassified"]:
            fig = misclassified_figure(*result["misclassified"], names)
            tb.experiment.add_figure("val/misclassified", fig, global_step=trainer.current_epoch)


#: What a history row keeps of the logged validation metrics (the per-class recalls stay in metrics.json).
HISTORY_KEYS = ("val/acc", "val/ece", "val/macro_acc", "val/macro_f1", "val/loss")
#: ... and of the training step's epoch means (train/loss is also logged per step).
TRAIN_KEYS = ("train/loss", "train/distill_loss", "train/labels_dropped", "train/teacher_reused")


class MetricsHistory(L.Callback):
    """Per-epoch record of val/train metrics, the precision the epoch trained in, wall-clock time (``elapsed_s``) and
    the process's CPU time (``cpu_s``, all its threads), both cumulative and kept across resumes via the checkpoint.
    A run paused (``kill -STOP``) or sharing the cores with other jobs gains wall time but hardly any CPU time, so
    ``cpu_s`` per epoch measures the work where ``elapsed_s`` also measures the machine's other load."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.elapsed_before = 0.0  # seconds spent in earlier (resumed-from) runs
        self.cpu_before = 0.0  # CPU seconds of earlier runs (0 for checkpoints written before cpu_s existed)
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._t0

    def cpu(self) -> float:
        return self.cpu_before + time.process_time() - self._cpu0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after this epoch's validation; train/* epoch means are read from the module's own metric state.
        row: dict[str, Any] = {
            "epoch": trainer.current_epoch + 1,
            "precision": str(trainer.precision),
            "elapsed_s": round(self.elapsed(), 1),
            "cpu_s": round(self.cpu(), 1),
        }
        row.update({k: float(trainer.callback_metrics[k]) for k in HISTORY_KEYS if k in trainer.callback_metrics})
        if pl_module.train_acc.update_count:
            row["train/acc"] = float(pl_module.train_acc.compute())
        for key in TRAIN_KEYS:
            value = trainer.callback_metrics.get(f"{key}_epoch", trainer.callback_metrics.get(key))
            if value is not None:
                row[key] = float(value)
        self.history = [h for h in self.history if h["epoch"] != row["epoch"]] + [row]
        hp = {f"hp/{k}": row[k] for k in ("val/acc", "val/macro_f1") if k in row}  # the HPARAMS tab, live
        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger) and hp:
                lg.log_metrics(hp, step=trainer.global_step)
        if trainer.is_global_zero and not trainer.sanity_checking:  # live progress for runs in the background
            # readers never see a half-written file
            atomic_write_text(Path(trainer.default_root_dir) / "history.json", json.dumps(self.history, indent=1))

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "elapsed": self.elapsed(), "cpu": self.cpu()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.elapsed_before = float(state_dict.get("elapsed", 0.0))
        self.cpu_before = float(state_dict.get("cpu", 0.0))


def fitting(trainer: L.Trainer) -> bool:
    return getattr(trainer.state, "fn", None) == "fit"


#: Settings a resume cannot change: the optimizer's and the schedule's state (learning rates, weight decay, the
#: one-cycle's peak) come back from the checkpoint.
RESTORED_PREFIXES = ("model.optimizer.", "model.scheduler.")


class ResumeCheck(L.Callback):
    """Keeps the run's hyperparameters (:func:`emotion.training.runs.run_hparams`) in its checkpoints. A resume
    whose settings differ names each: the optimizer's and the schedule's cannot take effect (a new
    ``model.optimizer.lr`` was silently overridden by the restored optimizer), the others take effect from the next
    epoch — ``trainer.precision`` among them, whose default follows the hardware (bf16 only where native), so a run
    continued on another machine changed precision without a word. The differences are kept for the run report."""

    KEY = "emotion_run_hparams"

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = dict(hparams)
        self.changes: list[dict[str, Any]] = []  # one entry per resume that changed something

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[self.KEY] = {"hparams": self.hparams, "changes": self.changes}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not fitting(trainer) or self.KEY not in checkpoint:  # validate/test of a checkpoint: nothing resumes
            return
        saved = checkpoint[self.KEY]
        self.changes = list(saved["changes"])
        old, new = saved["hparams"], self.hparams
        diff = {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}
        if not diff:
            return
        epoch = int(checkpoint.get("epoch", -1)) + 2  # the first epoch this resume trains (1-based)
        self.changes.append({"from_epoch": epoch, "settings": diff})

        def said(keys: list[str]) -> str:
            return ", ".join(f"{k} {diff[k][0]!r} -> {diff[k][1]!r}" for k in keys)

        if kept := [k for k in diff if k.startswith(RESTORED_PREFIXES)]:
            log.warning(
                "this resume asks for other optimizer/schedule settings than the run's (%s); they do NOT take effect: "
                "the optimizer's and the schedule's state come back from the checkpoint. To train on with them, "
                "start a new run_name with model.init_from=<this run's last.ckpt>",
                said(kept),
            )
        if rest := [k for k in diff if k not in kept]:
            log.warning(
                "this resume changes the run's settings from epoch %d on: %s; to keep the run's own, resume with %s",
                epoch,
                said(rest),
                " ".join(f"{k}={'null' if diff[k][0] is None else diff[k][0]}" for k in rest),
            )


class ForeachEMA(AveragedModel):
    """An exponential moving average whose update is one ``_foreach_lerp_`` over the floating-point tensors and one
    ``_foreach_copy_`` over the others (batch norm's counters follow the model), on tensor lists gathered once.

    ``AveragedModel.update_parameters`` with Lightning's ``avg_fn`` loops over every parameter and buffer in Python
    (~600 dispatches per update for EmotionVGG 64, more than its own forward and backward) and reads
    ``n_averaged`` back from the device twice per step; on a GPU, where a step of these networks is host-bound, that
    is time the accelerator waits. Same average (lerp is the same affine blend), a constant number of dispatches."""

    def __init__(self, model: torch.nn.Module, decay: float, device: Any = None, use_buffers: bool = True) -> None:
        super().__init__(model, device=device, use_buffers=use_buffers)
        self.decay = decay
        self._lists: tuple[list[torch.Tensor], ...] | None = None
        self._started: bool | None = None  # read from n_averaged once: a resumed average has already started

    def _gather(self, model: torch.nn.Module) -> tuple[list[torch.Tensor], ...]:
        mine, theirs = list(self.module.parameters()), list(model.parameters())
        copy_mine, copy_theirs = list(self.module.buffers()), list(model.buffers())
        if self.use_buffers:  # averaged like the weights, except integer ones (counters), which are copied
            mine, theirs = mine + copy_mine, theirs + copy_theirs
            copy_mine, copy_theirs = [], []
        blend = [(a.detach(), b.detach()) for a, b in zip(mine, theirs, strict=True) if a.is_floating_point()]
        copy = [(a.detach(), b.detach()) for a, b in zip(mine, theirs, strict=True) if not a.is_floating_point()]
        copy += [(a.detach(), b.detach()) for a, b in zip(copy_mine, copy_theirs, strict=True)]
        return [a for a, _ in blend], [b for _, b in blend], [a for a, _ in copy], [b for _, b in copy]

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        if self._lists is None:
            self._lists = self._gather(model)
            self._started = bool(self.n_averaged > 0)
        averaged, current, copied, source = self._lists
        if self._started:
            torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        else:  # the first update takes the weights as they are
            torch._foreach_copy_(averaged, current)
            self._started = True
        if copied:
            torch._foreach_copy_(copied, source)
        self.n_averaged += 1


class EMA(EMAWeightAveraging):
    """Lightning's exponential moving average of the weights (``decay`` per optimizer step), limited to ``fit``.

    During fit the averaged weights are the ones validated, kept by the checkpoints' ``state_dict`` (so the best
    checkpoint, exports and every tool use them) and copied into the model at the end; the raw weights ride along
    in the checkpoints for resuming. Lightning's callback would also act on the validate/test runs of a finished
    fit, where it reloads the *raw* weights of the checkpoint (``current_model_state``) and, for validation only,
    swaps the averaged ones back in — the final test would score other weights than the validation picked. Here
    those runs simply use the checkpoint's ``state_dict``: the averaged weights, as every other consumer does.
    The average itself is :class:`ForeachEMA`.
    """

    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        self.decay = decay

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # Lightning's setup, with the foreach average (pl_module.device is already the run's)
            self._average_model = ForeachEMA(
                pl_module, self.decay, device=self._device or pl_module.device, use_buffers=self._use_buffers
            )

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if fitting(trainer):
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if fitting(trainer):
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if fitting(trainer):
            super().on_validation_epoch_end(trainer, pl_module)


class OptunaPruning(L.Callback):
    """Reports each epoch's ``monitor`` to trial ``trial`` of an Optuna study (see :mod:`emotion.training.study`)
    and ends the run early, marking the trial pruned, when ``pruner`` says so. Works across processes: the job and
    the sweeper share only the storage. Does nothing outside a study (``trial`` null) or without a storage or pruner."""

    def __init__(
        self, storage: str | None, study_name: str, trial: int | None, monitor: str = "val/acc", pruner: Any = None
    ) -> None:
        self.storage, self.study_name, self.trial_number = storage, study_name, trial
        self.monitor, self.pruner = monitor, pruner
        self.pruned_at: int | None = None

    def _trial(self) -> Any:
        import optuna

        study = optuna.load_study(study_name=self.study_name, storage=self.storage, pruner=self.pruner)
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.trial_number)
        return study, optuna.trial.Trial(study, trial_id)  # Optuna's own objects; no public lookup by number

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not the final validate() of the best checkpoint
        if trainer.sanity_checking or not fitting(trainer) or None in (self.trial_number, self.storage, self.pruner):
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or self.pruned_at is not None:
            return
        study, trial = self._trial()
        trial.report(float(value), step=trainer.current_epoch)
        if trial.should_prune():
            import optuna

            study.tell(self.trial_number, state=optuna.trial.TrialState.PRUNED)
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True
            print(f"optuna: trial {self.trial_number} pruned after epoch {trainer.current_epoch}", file=sys.stderr)
