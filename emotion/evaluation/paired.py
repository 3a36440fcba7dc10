"""Is one model better than another on the same faces, or is the difference noise? McNemar's exact test.

Two models scored on the same 3,589 PublicTest faces differ only where one is right and the other wrong; under "no
difference" those disagreements split like fair coin flips. The exact (binomial) test needs no approximation and
no dependency. On PublicTest's 3,589 faces a gap of half a point is usually *not* significant.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact p-value of ``only_a`` vs ``only_b`` disagreements under a fair split (1.0 when none)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def paired_comparison(correct_a: torch.Tensor, correct_b: torch.Tensor) -> dict[str, Any]:
    """Face-by-face right/wrong of model A and model B on the same faces, in the same order → the comparison."""
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"the two models were scored on different faces ({len(correct_a)} vs {len(correct_b)})")
    a, b = correct_a.bool(), correct_b.bool()
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return {
        "n_images": len(a),
        "accuracy": float(a.float().mean()),
        "other_accuracy": float(b.float().mean()),
        "only_this_right": only_a,
        "only_other_right": only_b,
        "mcnemar_p": mcnemar_p(only_a, only_b),
    }
