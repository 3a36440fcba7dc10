"""The architectures by name, and networks rebuilt from a model file's spec: checkpoints never need to name
arbitrary Python objects."""

from __future__ import annotations

from typing import Any

from emotion.models.base import FER2013_MEAN, FER2013_STD, EmotionNet
from emotion.models.emotion_cnn import EmotionCNN
from emotion.models.emotion_vgg import EmotionVGG
from emotion.models.ensemble import EmotionEnsemble
from emotion.models.input_norm import input_norm_of

ARCHITECTURES: dict[str, type[EmotionNet]] = {m.arch: m for m in (EmotionCNN, EmotionVGG, EmotionEnsemble)}


def build_from_spec(spec: dict[str, Any]) -> EmotionNet:
    """Rebuild a network (untrained) from :meth:`EmotionNet.spec`."""
    # Retired sharpness matching (files written before 2026-11-24): a network that blurred its inputs was trained on
    # the blurred FER2013 copy and is refused; one that did not loads, its sharpness_* keys ignored.
    if float(spec.get("sharpness") or 0.0) > 0:
        raise ValueError(
            "it blurs its inputs (sharpness matching, retired): it was trained on the blurred FER2013 copy and "
            "misreads sharp faces; use a shipped model or retrain with `python -m emotion.train`"
        )
    arch = spec.get("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} in model file; known: {', '.join(sorted(ARCHITECTURES))}")
    kwargs = dict(spec.get("arch_kwargs", {}))
    if arch == EmotionEnsemble.arch:  # its members are nested specs
        kwargs["members"] = [build_from_spec(m) for m in kwargs["members"]]
    return ARCHITECTURES[arch](
        **kwargs,
        class_names=spec["class_names"],
        input_size=spec.get("input_size", 48),
        mean=spec.get("mean", FER2013_MEAN),
        std=spec.get("std", FER2013_STD),
        temperature=spec.get("temperature", 1.0),
        input_norm=input_norm_of(spec),
    )
