"""Batched, per-sample augmentation on the batch's device, driven by an explicit seed.

One ``affine_grid``/``grid_sample`` call applies random resized crop, rotation, translation and horizontal flip to
a whole batch; brightness, contrast, blur and noise (what a face cut from a photo or a webcam frame goes
through: ``experiments/faces_in_the_field/``) are per-sample tensor operations; random erasing is a vectorised
mask. The parameters come from a CPU generator seeded per batch, so the augmentation of batch *b* in epoch *e* is
a pure function of (seed, e, b): a resumed run sees exactly the images an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from emotion.ranges import check

MAX_SCALE = 2.0  # a crop of twice the image's area: the face at 71% of its size


@dataclass
class BatchAugment:
    hflip: bool = True
    rotate_deg: float = 10.0
    # crop area as a fraction of the image (RandomResizedCrop-style); above 1 the crop reaches past the image, so the
    # face comes out smaller (a zoom out, the edge filled by ``padding_mode``), as a detector's crop can frame it
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (1.0, 1.0)  # crop aspect ratio range
    translate: float = 0.0  # extra shift, fraction of the image side
    erasing_p: float = 0.0
    erasing_scale: tuple[float, float] = (0.02, 0.2)
    erasing_value: float = 0.5
    padding_mode: str = "zeros"  # grid_sample padding: zeros | border | reflection
    brightness: float = 0.0  # multiply each face by a factor drawn from [1 - b, 1 + b]
    contrast: float = 0.0  # scale each face's deviation from its mean by a factor from [1 - c, 1 + c]
    blur_p: float = 0.0  # share of faces blurred, by a Gaussian of sigma drawn from (0, blur_sigma] pixels
    blur_sigma: float = 1.0
    noise_std: float = 0.0  # Gaussian pixel noise (pixels in [0, 1])

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= MAX_SCALE:
            raise ValueError(
                f"augment.scale must satisfy 0 < min <= max <= {MAX_SCALE:g} (area of the crop over the image's: "
                f"below 1 zooms in, above 1 zooms out), got {self.scale}"
            )
        for name in ("erasing_p", "brightness", "contrast", "blur_p", "blur_sigma", "noise_std"):
            check(f"data.augment.{name}", getattr(self, name))
        if self.padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"augment.padding_mode must be zeros, border or reflection, got {self.padding_mode!r}")

    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """``x``: N×1×H×W uint8 or float in [0, 1] → float in [0, 1], same shape and device."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        n = x.shape[0]
        g = torch.Generator().manual_seed(int(seed))
        u = torch.rand(n, 8, generator=g, dtype=torch.float64)

        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        log_r = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * u[:, 1]
        r = torch.exp(log_r)
        side = max(1.0, math.sqrt(self.scale[1]))  # the widest crop: the image, or past it when zooming out
        w = torch.sqrt(area * r).clamp(max=side)  # crop width / image width
        h = torch.sqrt(area / r).clamp(max=side)
        cx = (1 - w) * (2 * u[:, 2] - 1) + self.translate * 2 * (2 * u[:, 4] - 1)
        cy = (1 - h) * (2 * u[:, 3] - 1) + self.translate * 2 * (2 * u[:, 5] - 1)
        angle = torch.deg2rad(self.rotate_deg * (2 * u[:, 6] - 1))
        flip = torch.where((u[:, 7] < 0.5) & self.hflip, -1.0, 1.0).double()

        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [
                torch.stack([cos * w * flip, -sin * h, cx], dim=1),
                torch.stack([sin * w * flip, cos * h, cy], dim=1),
            ],
            dim=1,
        ).to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)
        if self.brightness or self.contrast:
            out = self._light(out, g)
        if self.blur_p > 0:
            out = self._blur(out, g)
        if self.noise_std > 0:
            noise = torch.randn(out.shape, generator=g).to(device=out.device, dtype=out.dtype)
            out = (out + self.noise_std * noise).clamp_(0, 1)
        if self.erasing_p > 0:
            out = self._erase(out, g)
        return out

    def _light(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        u = torch.rand(x.shape[0], 2, generator=g).to(device=x.device, dtype=x.dtype).view(-1, 2, 1, 1)
        gain = 1 + self.brightness * (2 * u[:, 0:1] - 1)
        spread = 1 + self.contrast * (2 * u[:, 1:2] - 1)
        mean = x.mean(dim=(2, 3), keepdim=True)
        return ((x - mean) * spread + mean * gain).clamp_(0, 1)

    def _blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A separable Gaussian of its own sigma per face (one grouped convolution per axis); unblurred faces get
        a unit kernel."""
        n, c, h, w = x.shape
        u = torch.rand(n, 2, generator=g, dtype=torch.float64)
        sigma = torch.where(u[:, 0] < self.blur_p, self.blur_sigma * (1 - u[:, 1]), 0.0)  # (0, blur_sigma]
        r = max(1, math.ceil(3 * self.blur_sigma))
        t = torch.arange(-r, r + 1, dtype=torch.float64)
        kernel = torch.exp(-(t**2) / (2 * sigma.clamp(min=1e-3).view(-1, 1) ** 2))
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(device=x.device, dtype=x.dtype)
        kernel = kernel.repeat_interleave(c, dim=0)  # one kernel per (face, channel)
        y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="replicate")
        y = F.conv2d(y, kernel.view(n * c, 1, 1, -1), groups=n * c)
        y = F.conv2d(y, kernel.view(n * c, 1, -1, 1), groups=n * c)
        return y.view(n, c, h, w)

    def _erase(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, height, width = x.shape
        u = torch.rand(n, 5, generator=g)
        area = self.erasing_scale[0] + (self.erasing_scale[1] - self.erasing_scale[0]) * u[:, 0]
        r = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * u[:, 1])
        eh = (torch.sqrt(area * r) * height).round().clamp(1, height)
        ew = (torch.sqrt(area / r) * width).round().clamp(1, width)
        y0 = ((height - eh + 1) * u[:, 2]).floor()
        x0 = ((width - ew + 1) * u[:, 3]).floor()
        apply = u[:, 4] < self.erasing_p
        rows = torch.arange(height).view(1, height, 1)
        cols = torch.arange(width).view(1, 1, width)
        mask = (
            (rows >= y0.view(-1, 1, 1))
            & (rows < (y0 + eh).view(-1, 1, 1))
            & (cols >= x0.view(-1, 1, 1))
            & (cols < (x0 + ew).view(-1, 1, 1))
            & apply.view(-1, 1, 1)
        )
        return x.masked_fill(mask.unsqueeze(1).to(x.device), self.erasing_value)
