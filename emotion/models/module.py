"""LightningModule: loss on logits, torchmetrics on val/test, optimizer and schedule from Hydra partials."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassRecall,
)

from emotion.data.datamodule import NO_LABEL
from emotion.errors import UserError
from emotion.models import tta as tta_views
from emotion.models.base import EmotionNet
from emotion.models.checkpoint import CHECKPOINT_SPEC_KEY, check_compatible
from emotion.models.distill import Distillation, teacher_file
from emotion.models.loss import LossConfig
from emotion.models.sam import SAM
from emotion.models.teacher_outputs import TeacherOutputs, store_path
from emotion.ranges import check

log = logging.getLogger(__name__)


def eval_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "macro_acc": MulticlassAccuracy(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "ece": MulticlassCalibrationError(num_classes, n_bins=15, norm="l1"),  # expected calibration error
        }
    )


SCHEDULE_LENGTHS = ("total_steps", "T_max")  # OneCycleLR's and CosineAnnealingLR's length in steps
VAL_ACC_BEST_KEY = "val_acc_best"  # the best validation accuracy so far, carried across a resume
VIEWS_STREAM_KEY = "views_stream"  # the training views' stream (model.distill.fresh_views); absent: 0, as before it


def stream_name(stream: int) -> str:
    return f"stream {stream:08x}" if stream else "the seed's own stream (model.distill.fresh_views=false or no teacher)"


class EmotionModule(L.LightningModule):
    """Trains any :class:`EmotionNet`.

    ``optimizer``/``scheduler``: partials (Hydra ``_partial_: true``); a scheduler steps once per batch (its
    ``total_steps``/``T_max`` are filled in with the run's length) except ``ReduceLROnPlateau``, which steps once per
    epoch on ``val/acc``. ``loss``: :class:`LossConfig` fields; ``distill``: :class:`Distillation` fields;
    ``tta``: the test-time augmentation of the test metrics (:mod:`emotion.models.tta`); ``init_from``: a shipped
    model's name or a model file whose weights the training starts from (fine-tuning; same architecture and classes).
    ``sam_rho``: > 0 wraps the optimizer in sharpness-aware minimisation (:class:`emotion.models.sam.SAM`) with that
    radius; each step then runs the batch twice, and the second pass neither logs nor re-runs the teacher.
    """

    def __init__(
        self,
        net: EmotionNet,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        distill: Mapping[str, Any] | None = None,
        tta: str = "none",
        channels_last: bool = False,
        compile: bool = False,
        init_from: str | None = None,
        sam_rho: float = 0.0,
    ) -> None:
        super().__init__()
        check("model.sam_rho", sam_rho)
        self.sam_rho = sam_rho
        self.init_from = teacher_file(init_from, "model.init_from") if init_from else None
        self.loss_config = LossConfig(**dict(loss or {}))
        self.distill = Distillation(**dict(distill or {}))
        self.tta = tta_views.check_tta(tta)
        self.channels_last = channels_last
        hparams = {
            "loss": asdict(self.loss_config),
            "distill": asdict(self.distill),
            "tta": tta,
            "init_from": init_from,
            "sam_rho": sam_rho,
        }
        self.save_hyperparameters(hparams | {"channels_last": channels_last, "compile": compile}, logger=False)
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        if compile:
            self.net.compile()  # in place: state_dict keys stay those of the plain network
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.register_buffer("class_weights", torch.ones(net.num_classes), persistent=False)
        # Lets the model summary measure real FLOPs and tensor sizes (one forward pass of two faces).
        self.example_input_array = torch.zeros(2, 1, net.input_size, net.input_size, dtype=torch.uint8)
        k = net.num_classes
        self.train_acc = MulticlassAccuracy(k, average="micro", ignore_index=NO_LABEL)  # faces without a label
        self.val_metrics = eval_metrics(k).clone(prefix="val/")
        self.test_metrics = eval_metrics(k).clone(prefix="test/")
        self.val_recall = MulticlassRecall(k, average=None)
        self.test_recall = MulticlassRecall(k, average=None)
        self.val_acc_best = MaxMetric()
        # Frozen distillation teacher (fit only); in a list so that it is not a submodule: its weights stay out of
        # checkpoints, parameters() and the optimizer.
        self._teacher: list[EmotionNet] = []
        self._step_key: tuple[int, int] | None = None  # (global step, batch): SAM's second pass repeats it
        self._teacher_logits: torch.Tensor | None = None
        self._teacher_outputs: TeacherOutputs | None = None  # model.distill.reuse_outputs
        self._resumed_lengths: list[dict[str, int]] = []  # the schedule lengths of the checkpoint resumed from
        self._views_stream: int | None = None  # model.distill.fresh_views (computed once: it hashes the teacher)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.net.class_names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def predict_proba(self, x: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """Softmax probabilities, averaged over the test-time augmentation's views (default: the module's)."""
        return tta_views.averaged(lambda v: self.net.probabilities(self(v)), x, tta or self.tta)

    # ----------------------------------------------------------------- setup
    def flops_per_sample(self) -> int:
        """Training FLOPs (forward + backward) of one image, counted on the meta device (no compute)."""
        from lightning.fabric.utilities.throughput import measure_flops

        from emotion.models.registry import build_from_spec

        with torch.device("meta"):
            net = build_from_spec(self.net.spec())
            x = torch.randn(2, 1, net.input_size, net.input_size)  # 2: batch norm needs more than one sample
        return int(measure_flops(net, lambda: net(x), loss_fn=torch.Tensor.sum)) // 2

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.init_from:  # before Lightning restores a resumed run's checkpoint over it
            self.load_initial_weights(self.init_from)
        dm = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and dm is not None and hasattr(dm, "batch_size"):
            # Read by Lightning's ThroughputMonitor: logs FLOP/s (and MFU on known GPUs) besides images/s.
            self.flops_per_batch = self.flops_per_sample() * dm.batch_size
        if stage == "fit" and dm is not None and hasattr(dm, "views_stream"):  # before the training loader is built
            dm.views_stream = self.views_stream
            if dm.views_stream:
                log.info("model.distill.fresh_views: training views drawn from stream %08x", dm.views_stream)
        if stage == "fit" and dm is not None and self.loss_config.class_weighting:
            self.class_weights = self.loss_config.class_weights(dm.class_counts()).to(self.device)
        if dm is not None and tuple(dm.class_names) != self.class_names:
            raise ValueError(f"data classes {dm.class_names} differ from the model's {self.class_names}")
        if stage == "fit" and self.distill.precompute:  # before any training loader is built (a one-cycle
            self._store_targets(dm)  # schedule's length builds one before on_fit_start)

    @property
    def views_stream(self) -> int:
        if self._views_stream is None:
            self._views_stream = self.distill.views_stream()
        return self._views_stream

    def load_initial_weights(self, path: str) -> None:
        from emotion.models.checkpoint import load_net

        source = load_net(path)
        check_compatible(source.spec(), self.net.spec(), "model.init_from", same_input=False)
        try:
            self.net.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            lines = str(exc).splitlines()
            detail = next((line.strip() for line in lines if "size mismatch" in line), lines[0])
            raise UserError(
                f"model.init_from={path}: its weights do not fit the configured network ({detail}); "
                "configure the same widths (model.net.*) as the model it comes from"
            ) from None
        log.info("model.init_from: starting from the weights of %s", path)

    def on_fit_start(self) -> None:
        dm = getattr(self._trainer, "datamodule", None)  # None outside a Trainer
        if getattr(dm, "drop_labels", None) and not self.distill.teacher:
            raise UserError(
                f"data.drop_labels={dm.drop_labels} leaves its faces only the teacher to learn from; "
                "set model.distill.teacher, or data.drop_labels=null"
            )
        self._load_teacher(self.device)

    def _load_teacher(self, device: torch.device) -> None:
        if self.distill.teacher and not self._teacher:
            teacher = self.distill.load_teacher(self.class_names).to(device)
            self._teacher = [teacher.to(memory_format=torch.channels_last) if self.channels_last else teacher]
        if self.distill.reuse_outputs and self._teacher_outputs is None:
            self._open_teacher_outputs(device)

    def _open_teacher_outputs(self, device: torch.device) -> None:
        cache_dir = getattr(getattr(self._trainer, "datamodule", None), "cache_dir", None)
        if cache_dir is None:
            raise UserError(
                "model.distill.reuse_outputs=true keeps the teacher's outputs in the data cache's folder, and this run "
                "has none; set paths.cache_dir (data.cache_dir) or model.distill.reuse_outputs=false"
            )
        if self.trainer.world_size > 1:
            raise UserError(
                f"model.distill.reuse_outputs=true keeps one store for one process; this run has "
                f"{self.trainer.world_size} (trainer.devices); set model.distill.reuse_outputs=false"
            )
        files = tuple(teacher_file(name) for name in self.distill.teachers)
        path = store_path(cache_dir, files, str(self.trainer.precision), device.type)
        self._teacher_outputs = TeacherOutputs(path)
        log.info("model.distill.reuse_outputs: the teacher's outputs kept in %s", path)

    def on_train_epoch_end(self) -> None:
        if self._teacher_outputs is not None:
            self._teacher_outputs.flush()

    def on_fit_end(self) -> None:
        if self._teacher_outputs is not None:
            self._teacher_outputs.close()
            self._teacher_outputs = None

    def _store_targets(self, dm: Any) -> None:
        """``model.distill.precompute``: the teacher's targets for every training face, handed to the data module,
        whose training batches then carry them (computed on the run's device, in the precision the steps would run
        the teacher in)."""
        from emotion.models.distill import cached_stored_targets, teacher_file

        if dm is None or not hasattr(dm, "train_targets"):
            raise UserError("model.distill.precompute=true needs the FER2013 data module (data=fer2013 or synthetic)")
        if getattr(dm, "mix", None) is not None and dm.mix.enabled:
            raise UserError(
                "model.distill.precompute=true with data.mix: a mixed face's target would be a blend of stored ones; "
                "set data.mix's alphas to 0 or model.distill.precompute=false"
            )
        self._load_teacher(self.trainer.strategy.root_device)
        files = tuple(teacher_file(name) for name in self.distill.teachers)
        dm.train_targets = cached_stored_targets(
            self._teacher[0],
            files,
            dm.arrays("train")[0],
            dm.cache_dir,
            str(self.trainer.precision),
            self.trainer.precision_plugin.forward_context,
        )

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """``target``: class indices (:data:`NO_LABEL` for a face whose hard label ``data.drop_labels`` dropped: it
        learns from the teacher alone), or class probabilities when the batch was mixed (mixup/cutmix)."""
        x, target, *stored = batch  # stored: the teacher's targets (model.distill.precompute)
        if self.distill.precompute and not stored:
            raise RuntimeError("model.distill.precompute: a training batch came without the teacher's stored targets")
        labelled = target != NO_LABEL if target.ndim == 1 else None
        if labelled is not None and labelled.all():
            labelled = None
        if labelled is not None and not self._teacher:
            raise UserError("a training batch holds faces without a label (data.drop_labels) but no teacher")
        y = target if labelled is None else torch.where(labelled, target, 0)  # any class: its term is dropped below
        repeat = self._step_key == (self.global_step, batch_idx)  # SAM's second pass over the same batch
        self._step_key = (self.global_step, batch_idx)
        logits = self(x)
        if self._teacher and not repeat and stored:
            self._teacher_logits = stored[0]
        elif self._teacher and not repeat:
            with torch.no_grad():
                store = self._teacher_outputs
                if store is None:
                    self._teacher_logits = self._teacher[0](x)
                else:
                    read_before = store.read
                    self._teacher_logits = store(self._teacher[0], x)
                    reused = float(store.read > read_before)  # the epoch's mean: the share of batches read
                    self.log("train/teacher_reused", reused, on_step=False, on_epoch=True)
        kept = self.distill.labels_kept(self._teacher_logits, y) if self._teacher else None
        if labelled is not None:
            kept = labelled if kept is None else kept & labelled
        loss = self.loss_config(logits, y, weight=self.class_weights, kept=kept)
        if self._teacher:
            loss, soft = self.distill.combine(loss, logits, self._teacher_logits)
            if not repeat:
                self.log("train/distill_loss", soft, on_step=False, on_epoch=True)
                if kept is not None:
                    self.log("train/labels_dropped", 1 - kept.float().mean(), on_step=False, on_epoch=True)
        if not torch.isfinite(loss):
            raise UserError(
                f"training diverged: loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                "lower the learning rate (model.optimizer.lr) or add gradient clipping (trainer.gradient_clip_val)"
            )
        if not repeat:  # the metrics count each batch once, at the weights the step starts from
            self.train_acc(logits.detach(), target if target.ndim == 1 else target.argmax(1))
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        """Logs the loss, updates the metrics and returns the probabilities (callbacks see them as ``outputs``:
        :class:`emotion.training.callbacks.EvalResults` builds the confusion matrix from them)."""
        x, y = batch
        probs = self.predict_proba(x, tta="none" if stage == "val" else self.tta)
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), y)
        getattr(self, f"{stage}_metrics").update(probs, y)
        getattr(self, f"{stage}_recall").update(probs, y)
        # sync_dist: the mean over every rank's faces, reduced once at the epoch's end (metrics sync themselves)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        return probs

    def _eval_epoch_end(self, stage: str) -> None:
        """Everything the run reports is logged: ``trainer.validate``/``trainer.test`` return it."""
        metrics = getattr(self, f"{stage}_metrics").compute()
        self.log_dict(metrics, prog_bar=stage == "val")
        recall = getattr(self, f"{stage}_recall").compute()
        for name, r in zip(self.class_names, recall):
            self.log(f"{stage}/recall_{name}", r)
        if stage == "val":
            if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
                self.val_acc_best(metrics["val/acc"])
            if self.val_acc_best.update_count:  # nothing to report after the sanity check or in validate()
                self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)
        getattr(self, f"{stage}_metrics").reset()
        getattr(self, f"{stage}_recall").reset()

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.predict_proba(batch[0])

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("no optimizer configured (model.optimizer)")
        if self.sam_rho > 0:
            optimizer = SAM(self.parameters(), self.optimizer_factory, rho=self.sam_rho)
        else:
            optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs: dict[str, Any] = {}
        params = inspect.signature(getattr(self.scheduler_factory, "func", self.scheduler_factory)).parameters
        given = getattr(self.scheduler_factory, "keywords", {})
        for name in SCHEDULE_LENGTHS:  # OneCycleLR / CosineAnnealingLR: fill in the run's length
            if name in params and name not in given:
                kwargs[name] = int(self.trainer.estimated_stepping_batches)
        self._check_resumed_length(kwargs)
        scheduler = self.scheduler_factory(optimizer=optimizer, **kwargs)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "step"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config.update(monitor="val/acc", interval="epoch")  # set mode: max in its config
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _check_resumed_length(self, lengths: dict[str, int]) -> None:
        """A one-cycle schedule resumed with another length fails at its old end (PyTorch: "Tried to step N times");
        a cosine one would silently climb again. Say so before training instead."""
        for saved in self._resumed_lengths[:1]:
            for key, steps in lengths.items():
                if key in saved and saved[key] != steps:
                    raise UserError(
                        f"ckpt_path: the checkpoint's learning-rate schedule spans {saved[key]} steps, this run's "
                        f"{steps} (trainer.max_epochs or the batches per epoch changed since it started); resume "
                        "with the run's own trainer.max_epochs, or train on from its weights under a new run_name "
                        "with model.init_from=<its checkpoint>"
                    )

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_SPEC_KEY] = self.net.spec()
        checkpoint[VIEWS_STREAM_KEY] = self.views_stream
        # metric states stay out of state_dict: without this a resumed run's val/acc_best forgets earlier epochs
        if self.val_acc_best.update_count:
            checkpoint[VAL_ACC_BEST_KEY] = float(self.val_acc_best.compute())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_compatible(checkpoint.get(CHECKPOINT_SPEC_KEY), self.net.spec(), "checkpoint")
        saved = checkpoint.get(VIEWS_STREAM_KEY, 0)
        if saved != self.views_stream:  # the rest of the run would see other views than its first epochs did
            raise UserError(
                f"the checkpoint's run drew its training views from {stream_name(saved)}, this configuration from "
                f"{stream_name(self.views_stream)}: resume with the run's own model.distill settings (teacher, "
                f"fresh_views={'false' if saved == 0 else 'true'}), or start a new run"
            )
        self.val_acc_best.reset()
        if checkpoint.get(VAL_ACC_BEST_KEY) is not None:
            self.val_acc_best.update(torch.tensor(checkpoint[VAL_ACC_BEST_KEY]))
        # a resume's schedule must keep its length (checked in configure_optimizers, which runs after this)
        self._resumed_lengths = [
            {k: s[k] for k in SCHEDULE_LENGTHS if k in s} for s in checkpoint.get("lr_schedulers", [])
        ]
