"""Mixup and CutMix of training batches (torchvision's implementations), seeded per batch like the augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emotion.ranges import check


def mix_seed(batch_seed: int) -> int:
    """The mixing's own seed, derived from the batch seed so that it does not repeat the augmentation's stream."""
    return (batch_seed * 2_654_435_761 + 0x5BD1E995) % 2**63


@dataclass
class BatchMix:
    """``data.mix``: with probability ``p`` a training batch is mixed — every face with its neighbour in the
    (shuffled) batch — by mixup (Zhang et al. 2018: the whole images blended with a Beta(α, α) weight) or CutMix
    (Yun et al. 2019: a box of the neighbour pasted in), one of the two enabled ones chosen at random. The labels
    become class probabilities in the same proportions. An α of 0 turns that kind off."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha", "p"):
            check(f"data.mix.{name}", getattr(self, name))

    @property
    def enabled(self) -> bool:
        return self.p > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, seed: int, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: N×1×H×W (uint8, or float in [0, 1]); ``y``: class indices. Returns float images and either the
        indices (batch not mixed) or N×K class probabilities."""
        if not self.enabled:
            return x, y
        from torchvision.transforms import v2

        kinds = []
        if self.mixup_alpha > 0:
            kinds.append(v2.MixUp(alpha=self.mixup_alpha, num_classes=num_classes))
        if self.cutmix_alpha > 0:
            kinds.append(v2.CutMix(alpha=self.cutmix_alpha, num_classes=num_classes))
        with torch.random.fork_rng(devices=[]):  # the global CPU generator, which torchvision draws from
            torch.manual_seed(mix_seed(seed))
            if float(torch.rand(())) >= self.p:
                return x, y
            if x.dtype == torch.uint8:
                x = x.float().div_(255.0)
            return v2.RandomChoice(kinds)(x, y)
