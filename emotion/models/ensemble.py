"""EmotionEnsemble: several trained networks as one model that averages their probabilities.

Each member keeps its own preprocessing (normalisation, input pooling), so members trained
with different recipes combine safely. The ensemble is an :class:`EmotionNet` like any other: its spec nests the
members' specs, so it saves, loads, exports (ONNX, safetensors) and serves the apps unchanged. Build one from
trained files with ``python -m emotion.export 'ckpt_path=[A.ckpt,B.ckpt]' format=safetensors out=…``.
"""

from __future__ import annotations

import torch
from torch import nn

from emotion.models.base import EmotionNet


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
