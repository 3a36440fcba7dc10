"""EmotionCNN: the seed project's 4-conv network, layer for layer."""

from __future__ import annotations

import torch
from torch import nn

from emotion.models.base import EmotionNet, check_probability


class EmotionCNN(EmotionNet):
    """conv 1→32, 32→64, pool, dropout, conv 64→128, pool, conv 128→128, pool, dropout, FC 4608→1024, dropout, FC→7.

    All convolutions are 3×3 with padding 1 and are followed by ReLU; FC1 is followed by ReLU.
    """

    arch = "emotion_cnn"

    def __init__(
        self,
        dropout_conv1: float = 0.25,
        dropout_conv2: float = 0.25,
        dropout_fc: float = 0.5,
        **base_kwargs,
    ) -> None:
        super().__init__(**base_kwargs)
        if self.input_size != 48:
            raise ValueError(
                f"EmotionCNN is defined for 48x48 inputs (FC1 expects 4608 features), got input_size={self.input_size}"
            )
        self._arch_kwargs = {
            "dropout_conv1": check_probability("dropout_conv1", dropout_conv1),
            "dropout_conv2": check_probability("dropout_conv2", dropout_conv2),
            "dropout_fc": check_probability("dropout_fc", dropout_fc),
        }
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv4 = nn.Conv2d(128, 128, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(dropout_conv1)
        self.drop2 = nn.Dropout(dropout_conv2)
        self.drop3 = nn.Dropout(dropout_fc)
        self.fc1 = nn.Linear(128 * 6 * 6, 1024)
        self.fc2 = nn.Linear(1024, self.num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU after max-pool instead of before: max-pooling commutes with ReLU (both are monotonic), so outputs and
        # gradients are identical, and the ReLU runs on a quarter of the elements (faster training: measured in
        # experiments/throughput/). In-place ReLUs on fresh conv/pool outputs avoid an allocation each.
        x = torch.relu_(self.conv1(x))  # 32×48×48
        x = torch.relu_(self.pool(self.conv2(x)))  # 64×24×24
        x = self.drop1(x)
        x = torch.relu_(self.pool(self.conv3(x)))  # 128×12×12
        x = torch.relu_(self.pool(self.conv4(x)))  # 128×6×6
        x = self.drop2(x)
        x = torch.flatten(x, 1)  # 4608
        x = self.drop3(torch.relu_(self.fc1(x)))  # 1024
        return self.fc2(x)  # num_classes


def seed_order_logits(net: EmotionCNN, x: torch.Tensor) -> torch.Tensor:
    """``net.logits`` in the seed's literal layer order (each ReLU straight after its convolution, then the pool).

    The reference that :meth:`EmotionCNN.logits` must equal exactly (tests), and the network of the benchmark's
    naive seed pipeline (experiments/throughput/).
    """
    x = torch.relu(net.conv1(x))
    x = net.drop1(net.pool(torch.relu(net.conv2(x))))
    x = net.pool(torch.relu(net.conv3(x)))
    x = net.drop2(net.pool(torch.relu(net.conv4(x))))
    return net.fc2(net.drop3(torch.relu(net.fc1(torch.flatten(x, 1)))))
