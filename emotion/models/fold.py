"""Batch norm folded into the layer before it, for a frozen network (a distillation teacher).

In eval mode a batch norm is an affine map per channel, so it folds exactly into the weights and bias of the
convolution or linear layer it follows (PyTorch's :mod:`torch.nn.utils.fusion` does the arithmetic): one pass less
over every activation map. ONNX Runtime does the same when it loads an export; this is for the eager teacher, which
runs on every training batch (experiments/throughput/, "teacher" rows).
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_FOLDS = ((nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval), (nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval))


def fold_batch_norm(net: nn.Module) -> int:
    """Folds, in place, every batch norm that directly follows a convolution or linear layer inside an
    ``nn.Sequential`` of ``net`` (which must be in eval mode: training-mode batch norm uses the batch's own
    statistics and cannot be folded); the batch norm becomes an ``nn.Identity``. Returns how many were folded."""
    if net.training:
        raise ValueError("fold_batch_norm needs a network in eval mode (call .eval() first)")
    folded = 0
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, norm = seq[i], seq[i + 1]
            for layer_type, norm_type, fuse in _FOLDS:
                if type(layer) is layer_type and type(norm) is norm_type:
                    seq[i] = fuse(layer, norm)
                    seq[i + 1] = nn.Identity()
                    folded += 1
    return folded
