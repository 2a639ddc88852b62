"""Self-attention guidance (Hong et al. 2023): blur the negative prediction where the middle block's
self-attention concentrates, run the model on that degraded image, and guide away from what it predicts."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def attention_with_scores(q, k, v, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention on [batch, tokens, heads * dim] projections, and its softmaxed scores [batch * heads, q, k]."""
    b, _, inner = q.shape
    dim = inner // heads
    q, k, v = (t.reshape(b, -1, heads, dim).permute(0, 2, 1, 3).reshape(b * heads, -1, dim) for t in (q, k, v))
    scores = (torch.einsum("b i d, b j d -> b i j", q, k) * dim ** -0.5).softmax(dim=-1)
    out = torch.einsum("b i j, b j d -> b i d", scores.to(v.dtype), v)
    return out.reshape(b, heads, -1, dim).permute(0, 2, 1, 3).reshape(b, -1, inner), scores


def gaussian_blur(image: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    half = (kernel_size - 1) * 0.5
    pdf = torch.exp(-0.5 * (torch.linspace(-half, half, steps=kernel_size) / sigma).pow(2))
    kernel = (pdf / pdf.sum()).to(device=image.device, dtype=image.dtype)
    kernel = torch.mm(kernel[:, None], kernel[None, :]).expand(image.shape[-3], 1, kernel_size, kernel_size)
    image = F.pad(image, [kernel_size // 2] * 4, mode="reflect")
    return F.conv2d(image, kernel, groups=image.shape[-3])


def _grid(tokens: int, height: int, width: int) -> tuple[int, int]:
    """The (rows, columns) of the attention's token grid: the factorisation of `tokens` nearest the latent's
    aspect ratio."""
    rows = round(math.sqrt(height / width * tokens))
    for i in range(math.floor(math.sqrt(tokens) / 2)):
        for candidate in (rows + i, max(1, rows - i)):
            if tokens % candidate == 0:
                return candidate, tokens // candidate
    raise ValueError(f"no token grid of {tokens} near a {height}x{width} latent")


def degraded(x0: torch.Tensor, scores: torch.Tensor, blur_sigma: float, threshold: float = 1.0) -> torch.Tensor:
    """`x0` blurred where the tokens draw more than `threshold` attention in total (heads averaged)."""
    b, _, height, width = x0.shape
    scores = scores.reshape(b, -1, *scores.shape[1:])
    mask = scores.mean(1).sum(1) > threshold
    rows, cols = _grid(mask.shape[-1], height, width)
    mask = F.interpolate(mask.reshape(b, rows, cols).unsqueeze(1).to(scores.dtype), (height, width))
    return gaussian_blur(x0, 9, blur_sigma) * mask + x0 * (1 - mask)
