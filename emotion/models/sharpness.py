"""Sharpness matching: bring every input face to the sharpness of the training images.

The FER2013 copy this project trains on has blurred training images and sharp test images (median Laplacian
variance ~1e-4 vs ~3e-2 on the 0..1 scale; see ``python -m emotion.audit``). A network trained on blurred faces
misreads sharp ones. Like mean/std normalisation, the network therefore normalises sharpness itself: each input
is blurred with the Gaussian (from a fixed grid of sigmas, zero included) that brings its Laplacian variance
closest to a target taken from the training data (a quantile of its Laplacian variance, saved in the network's
spec). Faces already as blurred as the target pass unchanged, so training and inference run the very same step.

When the blur between the splits is known — :func:`blur_sigma_between` measures it from their power spectra, and
``python -m emotion.audit`` prints it (σ ≈ 3.0 px on the copy here) — the grid can be that one blur
(``model.sharpness_sigmas: [3.0]``), rounded to 8-bit levels as stored faces are (``model.sharpness_round``), with
the target at the sharp end of the training faces (90th percentile): sharp inputs then get exactly the blur the
training faces had, and the training faces themselves pass unchanged instead of being blurred further.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SIGMAS: tuple[float, ...] = tuple(0.5 * i for i in range(1, 9))  # 0.5 … 4.0 pixels (at 48×48)


_LAPLACIAN = torch.tensor([[[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]]])


def laplacian_variance(x: torch.Tensor) -> torch.Tensor:
    """Per-image variance of the 4-neighbour Laplacian (valid region) of ``…×H×W`` float images → ``…``.

    One convolution rather than five shifted slices: a single node in exported graphs (ONNX Runtime runs the
    slice form ~2× slower at batch 1).
    """
    *lead, h, w = x.shape
    lap = F.conv2d(x.reshape(-1, 1, h, w), _LAPLACIAN.to(device=x.device, dtype=x.dtype))
    return lap.view(*lead, -1).var(dim=-1)


def blur_matrices(size: int, sigmas: tuple[float, ...] = SIGMAS) -> torch.Tensor:
    """``S×size×size`` matrices ``B`` with ``B @ X @ B.T`` = Gaussian blur of ``X`` (reflect boundary, 3 sigma)."""
    mats = torch.zeros(len(sigmas), size, size, dtype=torch.float64, device="cpu")  # also under a meta device
    for k, s in enumerate(sigmas):
        radius = math.ceil(3 * s)
        t = torch.arange(-radius, radius + 1, dtype=torch.float64, device="cpu")
        g = torch.exp(-0.5 * (t / s) ** 2)
        g /= g.sum()
        for i in range(size):
            for tap, weight in zip(range(i - radius, i + radius + 1), g.tolist()):
                j = tap
                while not 0 <= j < size:  # reflect (…, 2, 1, | 0, 1, 2, …) until inside
                    j = -j if j < 0 else 2 * (size - 1) - j
                mats[k, i, j] += weight
    return mats.float()


def blur_stack(x: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """``N×1×H×W`` → ``N×S×H×W``: ``mats[s] @ x @ mats[s].T`` for every s, as two large matrix products."""
    n, _, h, w = x.shape
    s = mats.shape[0]
    rows = x.reshape(n * h, w) @ mats.transpose(1, 2).permute(1, 0, 2).reshape(w, s * w)  # [n h] × [s w]
    rows = rows.view(n, h, s, w).permute(2, 1, 0, 3).reshape(s, h, n * w)
    return torch.bmm(mats, rows).view(s, h, n, w).permute(2, 0, 1, 3)


def _blur_towards(
    x: torch.Tensor, lv: torch.Tensor, target: float, mats: torch.Tensor, round_to_8bit: bool
) -> torch.Tensor:
    """Each image, or its blurred version whose log Laplacian variance is closest to ``log(target)``."""
    blurred = blur_stack(x, mats)
    if round_to_8bit:  # as the training faces were stored: 8-bit levels after the blur (adds their rounding noise)
        blurred = torch.round(blurred * 255.0) / 255.0
    log_target = math.log(target)
    gap_blurred = (torch.log(laplacian_variance(blurred) + 1e-12) - log_target).abs()  # N×S
    gap_input = (torch.log(lv + 1e-12) - log_target).abs()  # N
    best_gap, best = gap_blurred.min(dim=1)
    n, _, h, w = x.shape
    chosen = torch.gather(blurred, 1, best.view(n, 1, 1, 1).expand(n, 1, h, w))
    return torch.where((gap_input <= best_gap).view(n, 1, 1, 1), x, chosen)


def _graph_capture() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def match_sharpness(x: torch.Tensor, target: float, mats: torch.Tensor, round_to_8bit: bool = False) -> torch.Tensor:
    """Blur each grayscale image in ``x`` (``N×1×H×W``, float 0..1) towards Laplacian variance ``target``.

    Images at or below the target sharpness come back unchanged. For each sharper image, the candidates are the
    image and its blurred versions (``mats`` from :func:`blur_matrices`, rounded to 8-bit levels if
    ``round_to_8bit``); the one whose log Laplacian variance is closest to ``log(target)`` is returned. Matrix
    products keep it fast on CPU and GPU; in eager mode only the sharper images are blurred (most training faces are
    not), while traced/exported graphs compute every image and select, which gives the same result with static
    shapes (ONNX, TorchScript).
    """
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] != mats.shape[-1] or x.shape[-2] != mats.shape[-1]:
        raise ValueError(
            f"sharpness matching expects grayscale N x 1 x {mats.shape[-1]} x {mats.shape[-1]} input, "
            f"got shape {tuple(x.shape)}"
        )
    mats = mats.to(x.dtype)
    lv = laplacian_variance(x)[:, 0]
    sharper = lv > target
    if _graph_capture():
        return torch.where(sharper.view(-1, 1, 1, 1), _blur_towards(x, lv, target, mats, round_to_8bit), x)
    idx = sharper.nonzero().flatten()
    if len(idx) == 0:
        return x
    out = x.clone()
    out[idx] = _blur_towards(x[idx], lv[idx], target, mats, round_to_8bit)
    return out


def blur_sigma_between(sharp: np.ndarray, blurred: np.ndarray, min_gain: float = 0.05) -> float:
    """Gaussian blur (pixels) that turns the ``sharp`` faces' spectrum into the ``blurred`` ones' (``N×H×W`` each).

    Both sets are averaged into radial power spectra (Hann-windowed, mean removed); their amplitude ratio ``H(f)``
    is fitted with a Gaussian's ``exp(-2π²σ²f²)`` by least squares on ``log H``, over the frequencies where
    ``H ≥ min_gain`` (above that, JPEG and 8-bit noise dominate the blurred spectrum). The two sets need not hold
    the same faces: the average spectrum of faces is much the same from one set to another.
    """
    if sharp.ndim != 3 or blurred.ndim != 3 or sharp.shape[1:] != blurred.shape[1:]:
        raise ValueError(f"expected two N x H x W image stacks of one size, got {sharp.shape} and {blurred.shape}")
    h, w = sharp.shape[1:]
    window = np.outer(np.hanning(h), np.hanning(w))

    def power(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float64) / 255.0
        x = (x - x.mean(axis=(1, 2), keepdims=True)) * window
        return (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0)

    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.rint(np.hypot(fy, fx) * min(h, w)).astype(int)  # ring index: frequency k / size
    p_sharp, p_blurred = power(sharp), power(blurred)
    sigma2_num = sigma2_den = 0.0
    for k in range(1, min(h, w) // 2 + 1):
        ring = radius == k
        gain = math.sqrt(p_blurred[ring].mean() / max(p_sharp[ring].mean(), 1e-30))
        if gain < min_gain:
            break  # the noise floor from here on
        if gain >= 1.0:
            continue  # no attenuation at this frequency: nothing to fit
        a = 2 * math.pi**2 * (k / min(h, w)) ** 2
        sigma2_num += a * -math.log(gain)
        sigma2_den += a * a
    return math.sqrt(sigma2_num / sigma2_den) if sigma2_den else 0.0
