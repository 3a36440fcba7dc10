"""EmotionVGG: a VGG-style network with batch norm, after Khaireddin & Chen (2021, "Facial Emotion Recognition:
State of the Art Performance on FER2013", 73.28% with widths 64-128-256-512).

Four stages of two 3×3 conv + BN + ReLU, each followed by 2×2 max-pool (48 → 24 → 12 → 6 → 3), then two fully
connected layers with dropout. ``widths`` scales it: (32, 64, 128, 256) costs about as much as EmotionCNN per image;
(64, 128, 256, 512) is the paper's width (``sota``, for a GPU).

``stem_pool`` > 1 average-pools the normalised input by that factor first: every convolution then costs that
factor squared less, at the price of the finest detail (a speed knob; see experiments/best/ for what it costs).
"""

from __future__ import annotations

import torch
from torch import nn

from emotion.models.base import EmotionNet, check_probability


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class EmotionVGG(EmotionNet):
    arch = "emotion_vgg"

    def __init__(
        self,
        widths: tuple[int, ...] | list[int] = (32, 64, 128, 256),
        fc: int = 256,
        dropout: float = 0.5,
        stem_pool: int = 1,
        **base_kwargs,
    ) -> None:
        super().__init__(**base_kwargs)
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {widths}")
        stem_pool = int(stem_pool)
        if stem_pool < 1:
            raise ValueError(f"stem_pool must be a pooling factor >= 1, got {stem_pool}")
        side = self.input_size // stem_pool // 2 ** len(widths)
        if side < 1:
            raise ValueError(
                f"stem_pool {stem_pool} and {len(widths)} stages shrink {self.input_size}px inputs below one pixel; "
                "use fewer stages or a smaller stem_pool"
            )
        self._arch_kwargs = {
            "widths": list(widths),
            "fc": int(fc),
            "dropout": check_probability("dropout", dropout),
            "stem_pool": stem_pool,
        }
        layers: list[nn.Module] = [nn.AvgPool2d(stem_pool)] if stem_pool > 1 else []
        cin = 1
        for w in widths:
            layers += [*conv_bn(cin, w), *conv_bn(w, w), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin * side * side, fc),
            nn.BatchNorm1d(fc),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, self.num_classes),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
