"""EmotionCNN's four convolutions, forward + backward, under each CPU convolution backend PyTorch has.

    python experiments/throughput/conv_backends.py [--batch 64] [--reps 8]

Prints the dense matmul FLOP/s (the card's bound, measured as ``bench.py`` does) and milliseconds and GFLOP/s per
layer for oneDNN (mkldnn, PyTorch's default on CPU), NNPACK and PyTorch's own
im2col + GEMM kernels, in channels_last and NCHW. It answers one question of the throughput card: is there a
faster convolution path than the default on this CPU? (FLOPs: 2·MACs for the forward, and twice that again for
the input and weight gradients; conv1 has no input gradient.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from bench import matmul_flops_per_s  # noqa: E402  (the bound the throughput card uses)

LAYERS = [(1, 32, 48), (32, 64, 48), (64, 128, 24), (128, 128, 12)]  # (in, out, side) of EmotionCNN's convs


def layer_ms(cin: int, cout: int, side: int, batch: int, reps: int, channels_last: bool) -> float:
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    x = torch.randn(batch, cin, side, side)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(cin > 1)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        conv(x).sum().backward()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times[2:])  # the first two warm up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=8)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(f"dense fp32 matmul 2048²: {matmul_flops_per_s() / 1e9:.1f} GFLOP/s")
    for backend in ("mkldnn", "nnpack", "native"):
        torch.backends.mkldnn.enabled = backend == "mkldnn"
        torch.backends.nnpack.enabled = backend == "nnpack"
        for cl in (True, False):
            cells = []
            for cin, cout, side in LAYERS:
                ms = layer_ms(cin, cout, side, args.batch, args.reps, cl)
                flops = 2 * args.batch * cout * side * side * cin * 9 * (3 if cin > 1 else 2)
                cells.append(f"{cin}->{cout}@{side}: {ms:6.1f} ms {flops / ms / 1e6:4.0f} GFLOP/s")
            print(f"{backend:6} {'channels_last' if cl else 'NCHW':13} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
