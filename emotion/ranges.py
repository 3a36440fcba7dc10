"""The allowed range of every numeric setting, in one table, checked in one place: before torch is imported
(:func:`emotion.cli.check_config` walks the composed config) and again by the classes that take the values (so a
value given in Python is held to the same rule). No torch here."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    low: float
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = False
    example: str = ""
    whole: bool = False  # a count: whole numbers only

    def text(self) -> str:
        kind, fmt = ("a whole number ", "d") if self.whole else ("", "g")
        low = format(int(self.low) if self.whole else self.low, fmt)
        if self.high is None:
            return f"{kind}{'>=' if self.low_inclusive else '>'} {low}"
        high = format(int(self.high) if self.whole else self.high, fmt)
        return f"{kind}in {'[' if self.low_inclusive else '('}{low}, {high}{']' if self.high_inclusive else ')'}"

    def holds(self, value: Any) -> bool:
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value:  # NaN fails
            return False
        if self.whole and not isinstance(value, numbers.Integral):
            return False
        above = value >= self.low if self.low_inclusive else value > self.low
        below = self.high is None or (value <= self.high if self.high_inclusive else value < self.high)
        return above and below


PROBABILITY = Range(0, 1, high_inclusive=True)
FRACTION = Range(0, 1)  # a dropout rate, a smoothing: 1 would leave nothing
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_inclusive=False)

#: setting → its range. ``*`` stands for any network's dropout settings.
RANGES: dict[str, Range] = {
    "model.optimizer.lr": Range(0, example="model.optimizer.lr=1e-3"),
    "model.optimizer.weight_decay": Range(0, example="model.optimizer.weight_decay=1e-4"),
    "model.loss.label_smoothing": FRACTION,
    "model.distill.alpha": PROBABILITY,
    "model.distill.temperature": POSITIVE,
    "model.distill.drop_labels_below": PROBABILITY,
    "model.sam_rho": Range(0, example="model.sam_rho=0.05"),
    "model.net.dropout": FRACTION,
    "model.net.dropout_conv1": FRACTION,
    "model.net.dropout_conv2": FRACTION,
    "model.net.dropout_fc": FRACTION,
    "data.augment.erasing_p": PROBABILITY,
    "data.augment.brightness": FRACTION,
    "data.augment.contrast": FRACTION,
    "data.augment.blur_p": PROBABILITY,
    "data.augment.blur_sigma": POSITIVE,
    "data.augment.noise_std": NON_NEGATIVE,
    "data.mix.mixup_alpha": NON_NEGATIVE,
    "data.mix.cutmix_alpha": NON_NEGATIVE,
    "data.mix.p": PROBABILITY,
    "data.views_p": PROBABILITY,
    "bins": Range(1, whole=True, example="bins=15"),  # python -m emotion.calibrate: the reliability bins
    "seed": Range(0, 2**32 - 1, high_inclusive=True, whole=True, example="seed=42"),  # what seed_everything takes
}


def check(key: str, value: Any) -> Any:
    """``value`` if it lies in ``key``'s range, else ValueError naming the setting, its range and the value."""
    rule = RANGES[key]
    if not rule.holds(value):
        example = f"; e.g. {rule.example}" if rule.example else ""
        raise ValueError(f"{key} must be {rule.text()}, got {value!r}{example}")
    return value
