"""Canny edge detection in plain torch, computing what kornia's `canny` does (ComfyUI's Canny node uses it).

Greyscale (BT.601 weights), a 5x5 Gaussian blur with sigma 1 (reflected borders, one axis at a time), the raw
Sobel gradient (replicated borders), non-maximum suppression along the gradient rounded to 45 degrees, double
threshold on the magnitude, then hysteresis until no weak pixel next to a strong one is left.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GREY_WEIGHTS = (0.299, 0.587, 0.114)
BLUR_SIZE, BLUR_SIGMA = 5, 1.0
EPS = 1e-6
# (dy, dx) of the neighbour in gradient direction k = 0..7 (45-degree steps from +x towards +y).
NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def _blur(image: torch.Tensor) -> torch.Tensor:
    offsets = torch.arange(BLUR_SIZE, dtype=image.dtype, device=image.device) - BLUR_SIZE // 2
    taps = torch.exp(-offsets ** 2 / (2 * BLUR_SIGMA ** 2))
    taps = taps / taps.sum()
    radius = BLUR_SIZE // 2
    image = F.conv2d(F.pad(image, (radius, radius, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(image, (0, 0, radius, radius), mode="reflect"), taps.view(1, 1, -1, 1))


def _sobel(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=image.dtype, device=image.device)
    kernels = torch.stack((kx, kx.t())).unsqueeze(1)
    gradient = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernels)
    return gradient[:, :1], gradient[:, 1:]


def _thin(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """The gradient magnitude where it is a maximum along the gradient direction, else 0."""
    height, width = gx.shape[-2:]
    # Outside the image the gradient is zero, so the border compares against the flat magnitude sqrt(EPS).
    padded = torch.sqrt(F.pad(gx, (1, 1, 1, 1)) ** 2 + F.pad(gy, (1, 1, 1, 1)) ** 2 + EPS)
    magnitude = padded[..., 1:-1, 1:-1]
    around = torch.stack([padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in NEIGHBOURS])
    direction = (torch.nan_to_num(torch.atan2(gy, gx)) * (4 / math.pi)).round()
    keep = magnitude > padded[..., :1, :1]
    for k in (direction % 8, (direction + 4) % 8):
        k = k.long()
        neighbour = around.gather(0, k.unsqueeze(0)).squeeze(0)
        # Along x and y the right/lower neighbour may tie (the left/upper pixel of a tied pair is kept).
        ties_ok = (k == 0) | (k == 2)
        keep &= (magnitude > neighbour) | (ties_ok & (magnitude == neighbour))
    return magnitude * keep


def _hysteresis(weak: torch.Tensor, strong: torch.Tensor) -> torch.Tensor:
    while True:
        grown = strong | (weak & (F.max_pool2d(strong.float(), 3, 1, 1) > 0))
        if torch.equal(grown, strong):
            return strong
        strong = grown


def canny(image: torch.Tensor, low_threshold: float, high_threshold: float) -> torch.Tensor:
    """Edges (0 or 1) of a [B, 1 or 3, H, W] image in 0..1 as a [B, 1, H, W] tensor of the image's dtype."""
    dtype = image.dtype
    x = image.float()
    if x.shape[1] == 3:
        x = sum(w * x[:, i:i + 1] for i, w in enumerate(GREY_WEIGHTS))
    gx, gy = _sobel(_blur(x))
    magnitude = _thin(gx, gy)
    return _hysteresis(magnitude > low_threshold, magnitude > high_threshold).to(dtype)
