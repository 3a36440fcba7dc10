"""The training loss: cross-entropy on logits (never on probabilities), with label smoothing and class weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from emotion.ranges import check

CLASS_WEIGHTINGS = (None, "inverse", "sqrt_inverse")


@dataclass(frozen=True)
class LossConfig:
    """``model.loss``: ``label_smoothing`` in [0, 1); ``class_weighting`` null, ``inverse`` or ``sqrt_inverse`` of
    the training split's class counts."""

    label_smoothing: float = 0.0
    class_weighting: str | None = None

    def __post_init__(self) -> None:
        check("model.loss.label_smoothing", self.label_smoothing)
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(
                f"model.loss.class_weighting must be null, inverse or sqrt_inverse, got {self.class_weighting!r}"
            )

    def class_weights(self, counts: Sequence[int]) -> torch.Tensor | None:
        """Per-class weights, scaled so that the training set's total weight is unchanged (None: unweighted)."""
        if self.class_weighting is None:
            return None
        c = torch.as_tensor(counts, dtype=torch.float32).clamp(min=1)
        w = c.sum() / (len(c) * c)
        if self.class_weighting == "sqrt_inverse":
            w = w.sqrt()
        return w / (w * c).sum() * c.sum()

    def __call__(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        kept: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``target``: class indices (N) or class probabilities (N×K, e.g. from mixup/cutmix). ``kept``: a bool per
        face; the others add nothing, and the mean keeps the whole batch's denominator (all kept: the plain loss)."""
        if kept is None:
            return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing)
        each = F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing, reduction="none")
        # cross_entropy's own mean over class indices divides by the faces' class weights, over probabilities by N
        total = weight[target].sum() if weight is not None and target.ndim == 1 else each.new_tensor(len(each))
        return (each * kept).sum() / total
