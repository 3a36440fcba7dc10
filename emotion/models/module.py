"""LightningModule: loss on logits, torchmetrics on val/test, optimizer and schedule from Hydra partials."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
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

from emotion.errors import UserError
from emotion.models.base import EmotionNet
from emotion.models.checkpoint import CHECKPOINT_SPEC_KEY, check_compatible

log = logging.getLogger(__name__)

TTA_MODES = ("none", "flip", "tencrop")
#: tencrop: side of the five crops as a share of the image side (44 of 48 px, ~0.84 of the area: within the
#: random-resized-crop range of the training augmentation), each resized back to the input size.
TENCROP_SIDE = 0.92


def five_crops(x: torch.Tensor, side: float = TENCROP_SIDE) -> list[torch.Tensor]:
    """The four corner crops and the centre crop of ``N×C×S×S`` images, each resized back to ``S×S`` (bilinear)."""
    if not x.is_floating_point():
        x = x.float() / 255.0  # the networks take uint8 or float in [0, 1]
    size = x.shape[-1]
    c = round(side * size)
    m = (size - c) // 2
    corners = [(0, 0), (0, size - c), (size - c, 0), (size - c, size - c), (m, m)]
    return [
        F.interpolate(x[..., i : i + c, j : j + c], size=(size, size), mode="bilinear", align_corners=False)
        for i, j in corners
    ]


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: KL(teacher ‖ student) of the temperature-softened distributions, × T²
    (so its gradients keep their scale as T changes)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True, reduction="batchmean"
    ) * (t * t)


def teacher_file(name_or_path: str) -> str:
    from emotion.models.pretrained import model_file

    try:
        return str(model_file(str(name_or_path)))
    except FileNotFoundError as exc:
        raise UserError(f"model.distill_teacher: {exc}") from None


def eval_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "macro_acc": MulticlassAccuracy(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "ece": MulticlassCalibrationError(num_classes, n_bins=15, norm="l1"),  # expected calibration error
        }
    )


class EmotionModule(L.LightningModule):
    """Trains any :class:`EmotionNet`. ``optimizer``/``scheduler`` are partials (Hydra ``_partial_: true``)."""

    def __init__(
        self,
        net: EmotionNet,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
        label_smoothing: float = 0.0,
        class_weighting: str | None = None,
        tta: str = "none",
        channels_last: bool = False,
        compile: bool = False,
        distill_teacher: str | None = None,
        distill_alpha: float = 0.5,
        distill_temperature: float = 4.0,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if class_weighting not in (None, "inverse", "sqrt_inverse"):
            raise ValueError(f"model.class_weighting must be null, inverse or sqrt_inverse, got {class_weighting!r}")
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"model.scheduler_interval must be step or epoch, got {scheduler_interval!r}")
        if not 0.0 <= distill_alpha <= 1.0:
            raise ValueError(f"model.distill_alpha must be in [0, 1], got {distill_alpha}")
        if not distill_temperature > 0:
            raise ValueError(f"model.distill_temperature must be > 0, got {distill_temperature}")
        if distill_teacher:
            teacher_file(distill_teacher)  # a wrong name or path fails now, before any data is read
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        if compile:
            self.net.compile()  # in place: state_dict keys stay those of the plain network
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.tta = tta
        self.register_buffer("class_weights", torch.ones(net.num_classes), persistent=False)
        # Lets the model summary measure real FLOPs and tensor sizes (one forward pass of two faces).
        self.example_input_array = torch.zeros(2, 1, net.input_size, net.input_size, dtype=torch.uint8)
        k = net.num_classes
        self.train_acc = MulticlassAccuracy(k, average="micro")
        self.val_metrics = eval_metrics(k).clone(prefix="val/")
        self.test_metrics = eval_metrics(k).clone(prefix="test/")
        self.val_recall = MulticlassRecall(k, average=None)
        self.test_recall = MulticlassRecall(k, average=None)
        self.val_acc_best = MaxMetric()
        # Frozen distillation teacher (fit only); in a list so that it is not a submodule: its weights stay out of
        # checkpoints, parameters() and the optimizer.
        self._teacher: list[EmotionNet] = []

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.net.class_names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def predict_proba(self, x: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """Softmax probabilities, averaged over test-time augmentations: ``flip`` adds the mirrored face;
        ``tencrop`` uses five crops (:func:`five_crops`) and their mirror images instead of the face."""
        tta = tta or self.tta
        views = five_crops(x) if tta == "tencrop" else [x]
        if tta in ("flip", "tencrop"):
            views += [torch.flip(v, dims=[3]) for v in views]
        return torch.stack([self.net.probabilities(self(v)) for v in views]).mean(0)

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
        dm = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and dm is not None and hasattr(dm, "batch_size"):
            # Read by Lightning's ThroughputMonitor: logs FLOP/s (and MFU on known GPUs) besides images/s.
            self.flops_per_batch = self.flops_per_sample() * dm.batch_size
        if stage == "fit" and self.hparams.class_weighting and dm is not None:
            counts = torch.as_tensor(dm.class_counts(), dtype=torch.float32).clamp(min=1)
            w = counts.sum() / (len(counts) * counts)
            if self.hparams.class_weighting == "sqrt_inverse":
                w = w.sqrt()
            self.class_weights = (w / (w * counts).sum() * counts.sum()).to(self.device)
        if dm is not None and tuple(dm.class_names) != self.class_names:
            raise ValueError(f"data classes {dm.class_names} differ from the model's {self.class_names}")

    def on_fit_start(self) -> None:
        if self.hparams.distill_teacher and not self._teacher:
            self._teacher = [self.load_teacher(self.hparams.distill_teacher)]

    def load_teacher(self, name_or_path: str) -> EmotionNet:
        """The frozen network whose softened predictions the student learns from (``model.distill_teacher``).

        It applies its own preprocessing (normalisation, input pooling) to the same raw augmented batch.
        """
        from emotion.models.checkpoint import load_net

        teacher = load_net(teacher_file(name_or_path))
        if teacher.class_names != self.class_names:
            raise UserError(
                f"model.distill_teacher {name_or_path!r} predicts {teacher.class_names}, the model being trained "
                f"{self.class_names}; distil from a teacher with the same classes in the same order"
            )
        teacher.requires_grad_(False).eval().to(self.device)
        if self.hparams.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        log.info(
            "distilling from %s (alpha %s, temperature %s)",
            name_or_path,
            self.hparams.distill_alpha,
            self.hparams.distill_temperature,
        )
        return teacher

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=self.hparams.label_smoothing)
        if self._teacher:
            with torch.no_grad():
                teacher_logits = self._teacher[0](x)
            soft = distillation_loss(logits, teacher_logits, self.hparams.distill_temperature)
            self.log("train/distill_loss", soft, on_step=False, on_epoch=True)
            a = self.hparams.distill_alpha
            loss = (1 - a) * loss + a * soft
        if not torch.isfinite(loss):
            raise UserError(
                f"training diverged: loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                "lower the learning rate (model.optimizer.lr) or add gradient clipping (trainer.gradient_clip_val)"
            )
        self.train_acc(logits.detach(), y)
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
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val")
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
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs: dict[str, Any] = {}
        params = inspect.signature(getattr(self.scheduler_factory, "func", self.scheduler_factory)).parameters
        given = getattr(self.scheduler_factory, "keywords", {})
        steps = (
            self.trainer.estimated_stepping_batches
            if self.hparams.scheduler_interval == "step"
            else self.trainer.max_epochs
        )
        for name in ("total_steps", "T_max"):  # OneCycleLR / CosineAnnealingLR: fill in the run's length
            if name in params and name not in given:
                kwargs[name] = int(steps)
        scheduler = self.scheduler_factory(optimizer=optimizer, **kwargs)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.hparams.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config.update(monitor="val/acc", interval="epoch")  # set mode: max in its config
        return {"optimizer": optimizer, "lr_scheduler": config}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_SPEC_KEY] = self.net.spec()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_compatible(checkpoint.get(CHECKPOINT_SPEC_KEY), self.net.spec(), "checkpoint")
