"""Knowledge distillation (Hinton et al. 2015): the student also learns a frozen teacher's softened predictions."""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Distillation:
    """``model.distill``: loss = (1 − alpha)·loss + alpha·T²·KL(teacher ‖ student). ``teacher``: a shipped model's
    name or a model file, or a list of them whose probabilities are averaged (an :class:`EmotionEnsemble` built at
    the start of the fit, as ``python -m emotion.export 'ckpt_path=[A,B]'`` would write it); null: off. A wrong name
    or path fails when the config is built, before any data is read.

    ``drop_labels_below`` (label noise): a face whose label the teacher gives less than this probability (softmax at
    T = 1) keeps no hard-label term — it learns from the teacher alone; 0 keeps every label."""

    teacher: str | tuple[str, ...] | None = None
    alpha: float = 0.5
    temperature: float = 4.0
    drop_labels_below: float = 0.0

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

    def load_teacher(self, class_names: tuple[str, ...]) -> EmotionNet:
        """The frozen teacher, in eval mode. It applies its own preprocessing (normalisation, input pooling) to the
        student's raw augmented batch, so a teacher of another architecture or input size fits."""
        from emotion.models.checkpoint import load_net
        from emotion.models.ensemble import EmotionEnsemble

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
        log.info("distilling from %s (alpha %s, temperature %s)", self.teacher, self.alpha, self.temperature)
        return teacher.requires_grad_(False).eval()

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
