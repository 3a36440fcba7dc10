"""EmotionEnsemble: several trained networks as one model that averages their probabilities.

Each member keeps its own preprocessing (normalisation, input pooling), so members trained
with different recipes combine safely. The ensemble is an :class:`EmotionNet` like any other: its spec nests the
members' specs, so it saves, loads, exports (ONNX, safetensors) and serves the apps unchanged. Build one from
trained files with ``python -m emotion.export 'ckpt_path=[A.ckpt,B.ckpt]' format=safetensors out=…``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from emotion.models.base import EmotionNet

log = logging.getLogger(__name__)


class EmotionEnsemble(EmotionNet):
    arch = "ensemble"

    def __init__(self, members: list[EmotionNet], **base_kwargs) -> None:
        """``members``: trained networks (a spec's member specs are built by :func:`emotion.models.build_from_spec`)."""
        super().__init__(**base_kwargs)
        nets = list(members)
        if len(nets) < 2:
            raise ValueError(f"an ensemble needs at least two member networks, got {len(nets)}")
        for i, net in enumerate(nets):
            if net.class_names != self.class_names or net.input_size != self.input_size:
                raise ValueError(
                    f"ensemble member {i} predicts {net.class_names} from {net.input_size}px inputs, the ensemble "
                    f"{self.class_names} from {self.input_size}px; combine models with the same classes and input size"
                )
        self.members = nn.ModuleList(nets)
        self._arch_kwargs = {"members": [net.spec() for net in nets]}

    @classmethod
    def of(cls, nets: list[EmotionNet]) -> EmotionEnsemble:
        """The ensemble of trained networks (their class names and input size must agree)."""
        return cls(nets, class_names=nets[0].class_names, input_size=nets[0].input_size).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels → log of the members' mean probabilities (softmax of it gives back that mean)."""
        probs = torch.stack([m.probabilities(m(x)) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


def weight_average(nets: list[EmotionNet]) -> EmotionNet:
    """One network whose weights are the mean of ``nets``' (a "model soup"): for networks of one architecture and
    spec fine-tuned from the same start (which often average into a network as good as each, or better: measure it)
    at the cost of one, where :class:`EmotionEnsemble` costs one network per member. Batch-norm running statistics
    are averaged too; integer buffers (batch counts) come from the first network. Calibration temperatures may
    differ (a fine-tune of a shipped, calibrated model and its start): the average is uncalibrated (temperature 1,
    logged), since the members' temperatures say nothing about how confident the new network is."""
    if len(nets) < 2:
        raise ValueError(f"a weight average needs at least two networks, got {len(nets)}")
    spec = {**nets[0].spec(), "temperature": 1.0}
    for i, net in enumerate(nets[1:], 1):
        other = {**net.spec(), "temperature": 1.0}
        if other != spec:
            diff = sorted(k for k in spec if other.get(k) != spec[k])
            raise ValueError(
                f"network {i} differs from network 0 in {', '.join(diff)}: weights average only across one "
                "architecture and spec (networks fine-tuned from one start); combine=ensemble averages any models' "
                "probabilities instead"
            )
    if any(net.temperature != 1.0 for net in nets):
        log.info(
            "the averaged networks' temperatures (%s) do not carry over: the average is uncalibrated; "
            "calibrate it with python -m emotion.calibrate",
            ", ".join(f"{net.temperature:.3g}" for net in nets),
        )
    states = [net.state_dict() for net in nets]
    averaged = {
        k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v.clone()
        for k, v in states[0].items()
    }
    from emotion.models import build_from_spec

    out = build_from_spec(spec)
    out.load_state_dict(averaged)
    return out.eval()
