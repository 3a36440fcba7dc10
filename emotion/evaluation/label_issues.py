"""Label issues in the training split by confident learning (Northcutt et al. 2021, the ``cleanlab`` library): every
training face is judged by a model that never saw it (out-of-fold), and faces whose given label disagrees with
those predictions beyond each class's estimated noise rate are flagged.

1. :func:`stratified_folds` splits the training faces into K folds (per class, seeded); each fold's faces are written
   as a ``data.exclude`` file, and model *i* is trained with ``data.exclude=fold<i>.json`` (it never sees fold *i*);
2. :func:`out_of_fold_probs` has model *i* predict fold *i*'s faces, so that each face gets one out-of-fold
   prediction;
3. :func:`find_issues` hands labels and predictions to ``cleanlab.filter.find_label_issues``; the flagged faces are
   written as a ``data.exclude`` file again, so that a training run leaves them out (``prune and retrain``), or
   keeps them without their labels (``data.drop_labels``: they learn from the distillation teacher alone).

The command is ``experiments/tools/label_issues.py``; the study is in ``experiments/recipe/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from emotion.errors import UserError
from emotion.models.base import EmotionNet
from emotion.models.tta import averaged


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint index arrays covering ``labels``: each class shuffled (seeded) and dealt round-robin, so every
    fold holds ~1/k of every class. Indices within a fold are sorted."""
    if k < 2:
        raise UserError(f"k must be >= 2 (one fold held out per model), got {k}")
    if len(labels) < k:
        raise UserError(f"{len(labels)} faces cannot be split into {k} folds")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), np.int64)
    start = 0  # where the next class starts dealing, so that small classes do not all land in fold 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold_of[idx] = (start + np.arange(len(idx))) % k
        start = (start + len(idx)) % k
    return [np.flatnonzero(fold_of == f) for f in range(k)]


@torch.no_grad()
def probabilities(
    net: EmotionNet, images: np.ndarray, tta: str = "flip", batch: int = 512, device: str = "cpu"
) -> np.ndarray:
    """The network's calibrated class probabilities (its temperature applied) for ``N×S×S`` uint8 faces."""
    net = net.to(device)
    x = torch.from_numpy(images).unsqueeze(1)
    out = [averaged(net.predict_proba, x[i : i + batch].to(device), tta).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy()


def out_of_fold_probs(
    nets: Sequence[EmotionNet], folds: Sequence[np.ndarray], images: np.ndarray, tta: str = "flip", device: str = "cpu"
) -> np.ndarray:
    """``N×C`` probabilities: row ``j`` from the one network whose fold holds face ``j`` (it was trained without it)."""
    if len(nets) != len(folds):
        raise UserError(f"{len(nets)} models for {len(folds)} folds: give one model per fold, in fold order")
    covered = np.concatenate(folds)
    if len(covered) != len(images) or len(np.unique(covered)) != len(images):
        raise UserError(f"the folds cover {len(np.unique(covered))} of {len(images)} faces, some twice or none")
    probs = np.zeros((len(images), len(nets[0].class_names)), np.float32)
    for net, fold in zip(nets, folds, strict=True):
        probs[fold] = probabilities(net, images[fold], tta, device=device)
    return probs


def find_issues(
    labels: np.ndarray, probs: np.ndarray, filter_by: str = "prune_by_noise_rate", frac_noise: float = 1.0
) -> np.ndarray:
    """Indices of the faces whose label looks wrong, most doubtful first (lowest probability of the given label).
    ``frac_noise`` < 1 keeps only that fraction of each class's estimated label errors (cleanlab's knob): a gentler
    prune when the models are weak and flag hard-but-right faces too."""
    if not 0.0 < frac_noise <= 1.0:
        raise UserError(f"frac_noise must be in (0, 1], got {frac_noise}")
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        raise UserError("finding label issues needs cleanlab: pip install -e '.[labelnoise]'") from None
    return find_label_issues(
        labels, probs, filter_by=filter_by, frac_noise=frac_noise, return_indices_ranked_by="self_confidence"
    )


def issue_report(labels: np.ndarray, probs: np.ndarray, issues: np.ndarray, class_names: Sequence[str]) -> dict:
    """What was flagged, per class: how many faces, how many flagged, and the labels the models preferred instead."""
    per_class: dict[str, Any] = {}
    predicted = probs.argmax(1)
    for c, name in enumerate(class_names):
        mine = issues[labels[issues] == c]
        instead = np.bincount(predicted[mine], minlength=len(class_names))
        per_class[name] = {
            "faces": int((labels == c).sum()),
            "flagged": len(mine),
            "models_prefer": {class_names[j]: int(n) for j, n in enumerate(instead) if n},
        }
    return {
        "faces": len(labels),
        "flagged": len(issues),
        "out_of_fold_accuracy": float((predicted == labels).mean()),
        "per_class": per_class,
    }
