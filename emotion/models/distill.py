"""Knowledge distillation (Hinton et al. 2015): the student also learns a frozen teacher's softened predictions."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emotion.errors import UserError
from emotion.models.base import EmotionNet
from emotion.ranges import check

log = logging.getLogger(__name__)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the temperature-softened distributions, × T² (so that its gradients keep their
    scale as T changes)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True, reduction="batchmean"
    ) * (t * t)


def teacher_file(name_or_path: str, setting: str = "model.distill.teacher") -> str:
    """A shipped model's name or a model file → the file; a UserError naming ``setting`` when it is neither."""
    from emotion.models.pretrained import model_file

    try:
        return str(model_file(str(name_or_path)))
    except FileNotFoundError as exc:
        raise UserError(f"{setting}: {exc}") from None


def teacher_key(header: str, files: tuple[str, ...]) -> hashlib._Hash:
    """A SHA-256 of ``header`` and the teacher's model files by content: the key of what was computed from them."""
    key = hashlib.sha256(header.encode())
    for file in files:
        key.update(hashlib.sha256(Path(file).read_bytes()).digest())
    return key


@dataclass(frozen=True)
class Distillation:
    """``model.distill``: loss = (1 − alpha)·loss + alpha·T²·KL(teacher ‖ student). ``teacher``: a shipped model's
    name or a model file, or a list of them whose probabilities are averaged (an :class:`EmotionEnsemble` built at
    the start of the fit, as ``python -m emotion.export 'ckpt_path=[A,B]'`` would write it); null: off. A wrong name
    or path fails when the config is built, before any data is read.

    ``drop_labels_below`` (label noise): a face whose label the teacher gives less than this probability (softmax at
    T = 1) keeps no hard-label term — it learns from the teacher alone; 0 keeps every label.

    ``precompute``: the teacher's targets are computed once per training face before the first epoch — its
    probabilities averaged over the face and its mirror image, unaugmented (:func:`stored_targets`; cached on disk
    beside the data cache) — instead of on every augmented batch: an epoch costs the student alone, and the targets
    no longer follow the augmentation.

    ``reuse_outputs``: the teacher's outputs on each training batch are kept on disk by the batch's content, and read
    back by any later run that shows it the same batch (:mod:`emotion.models.teacher_outputs`): ablations of one
    seed's loss, optimizer or schedule then cost the student alone, with the same numbers.

    ``fresh_views``: the student's augmented views come from a stream keyed by the teacher's files as well as the seed
    (:meth:`views_stream`), so that a student trained with its teacher's own seed is not shown the exact augmented
    faces the teacher learnt, on which the teacher is more confident than on any other view of them
    (``experiments/recipe/``, "The teacher's own views"); false: the seed's stream alone, as every run before
    2026-12-07 drew it (reproduces those runs and finds their stored outputs)."""

    teacher: str | tuple[str, ...] | None = None
    alpha: float = 0.5
    temperature: float = 4.0
    drop_labels_below: float = 0.0
    precompute: bool = False
    reuse_outputs: bool = False
    fresh_views: bool = True

    def __post_init__(self) -> None:
        check("model.distill.alpha", self.alpha)
        check("model.distill.temperature", self.temperature)
        check("model.distill.drop_labels_below", self.drop_labels_below)
        if self.teacher is not None and not isinstance(self.teacher, str):  # a list (Hydra's ListConfig included)
            names = tuple(str(t) for t in self.teacher)
            if not names:
                raise UserError("model.distill.teacher: an empty list; give a model, a list of models, or null (off)")
            object.__setattr__(self, "teacher", names[0] if len(names) == 1 else names)
        for name in self.teachers:
            teacher_file(name)
        for knob in ("precompute", "reuse_outputs"):
            if getattr(self, knob) and not self.teacher:
                raise UserError(f"model.distill.{knob}=true needs a teacher; set model.distill.teacher")
        if self.precompute and self.reuse_outputs:
            raise UserError(
                "model.distill.precompute=true runs the teacher once per face, not per batch: there are no batch "
                "outputs to reuse; set model.distill.reuse_outputs=false"
            )
        if self.drop_labels_below and not self.teacher:
            raise UserError(
                f"model.distill.drop_labels_below={self.drop_labels_below} needs a teacher to judge the labels; "
                "set model.distill.teacher, or drop_labels_below=0"
            )

    @property
    def teachers(self) -> tuple[str, ...]:
        """The teacher's models: none, one, or the members of the averaged teacher."""
        if not self.teacher:
            return ()
        return (self.teacher,) if isinstance(self.teacher, str) else self.teacher

    def views_stream(self) -> int:
        """The training views' stream (:func:`emotion.data.datamodule.batch_seed`): 32 bits of the teacher's files'
        hash, or 0 (the seed's own stream) without a teacher or with ``fresh_views`` off."""
        if not self.teacher or not self.fresh_views:
            return 0
        key = teacher_key("views|", tuple(teacher_file(name) for name in self.teachers))
        return int.from_bytes(key.digest()[:4], "little") or 1

    def load_teacher(self, class_names: tuple[str, ...]) -> EmotionNet:
        """The frozen teacher, in eval mode. It applies its own preprocessing (normalisation, input pooling) to the
        student's raw augmented batch, so a teacher of another architecture or input size fits."""
        from emotion.models.checkpoint import load_net
        from emotion.models.ensemble import EmotionEnsemble
        from emotion.models.fold import fold_batch_norm

        nets = [load_net(teacher_file(name)) for name in self.teachers]
        for name, net in zip(self.teachers, nets, strict=True):
            if net.class_names != class_names:
                raise UserError(
                    f"model.distill.teacher {name!r} predicts {net.class_names}, the model being trained "
                    f"{class_names}; distil from a teacher with the same classes in the same order"
                )
        if len(nets) == 1:
            teacher = nets[0]
        else:
            try:
                teacher = EmotionEnsemble.of(nets)
            except ValueError as exc:
                raise UserError(f"model.distill.teacher {list(self.teachers)}: {exc}") from None
        teacher.requires_grad_(False).eval()
        folded = fold_batch_norm(teacher)  # a frozen teacher: the same outputs, one pass less per batch norm
        log.info(
            "distilling from %s (alpha %s, temperature %s; %d batch norms folded)",
            self.teacher,
            self.alpha,
            self.temperature,
            folded,
        )
        return teacher

    def labels_kept(self, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """Which faces keep their hard-label term (a bool per face), or None when every face does.
        ``target``: class indices, or class probabilities (mixed batches: the teacher's probability of the mix)."""
        if not self.drop_labels_below:
            return None
        probs = F.softmax(teacher.float(), dim=1)
        given = probs.gather(1, target[:, None])[:, 0] if target.ndim == 1 else (probs * target).sum(1)
        return given >= self.drop_labels_below

    def combine(self, loss: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(the blended loss, the soft-target term alone)."""
        soft = distillation_loss(student, teacher, self.temperature)
        return (1 - self.alpha) * loss + self.alpha * soft, soft


# bump when stored_targets computes something else: older cache files are never read again (2: batch norms folded)
STORED_FORMAT = 2


def stored_targets(
    teacher: EmotionNet,
    images: np.ndarray,
    batch_size: int = 256,
    context: Callable[[], AbstractContextManager] = nullcontext,
) -> torch.Tensor:
    """The teacher's targets for ``images`` (``N×S×S`` uint8 faces, unaugmented): ``N×C`` float32, the log of its
    probabilities (softmax of what it returns, as distillation reads it) averaged over each face and its mirror
    image; ``context``: the precision the training steps run the teacher in (``trainer.precision_plugin``)."""
    from emotion.models.tta import averaged

    device = next(teacher.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).unsqueeze(1).to(device)
            with context():
                probs = averaged(lambda v: F.softmax(teacher(v).float(), dim=1), x, "flip")
            out.append(probs.clamp_min(1e-12).log().float().cpu())
    return torch.cat(out) if out else torch.zeros(0, teacher.num_classes)


def cached_stored_targets(
    teacher: EmotionNet,
    files: tuple[str, ...],
    images: np.ndarray,
    cache_dir: str | Path | None,
    precision: str,
    context: Callable[[], AbstractContextManager] = nullcontext,
) -> torch.Tensor:
    """:func:`stored_targets`, read from ``cache_dir`` when the same teacher ``files`` (by content), faces and
    ``precision`` made them before (a resumed run starts at once); None: no cache."""
    key = teacher_key(f"v{STORED_FORMAT}|{precision}|{images.shape}|", files)
    key.update(np.ascontiguousarray(images).tobytes())
    path = Path(cache_dir) / f"teacher-{key.hexdigest()[:20]}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        log.info("model.distill.precompute: the teacher's targets read from %s", path)
        return torch.from_numpy(np.load(path))
    t0 = time.perf_counter()
    targets = stored_targets(teacher, images, context=context)
    seconds = time.perf_counter() - t0
    log.info("model.distill.precompute: the teacher's targets for %d faces in %.0f s", len(images), seconds)
    if path is not None:
        from emotion.atomic import atomic_open

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:
            np.save(fh, targets.numpy())
    return targets
