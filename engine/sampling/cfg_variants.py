"""Alternatives to plain classifier-free guidance, each a small function of the denoised predictions.

`x` is the noisy latent at `sigma`, `cond` / `uncond` the positive and negative predictions of x0 and `guided` the
result of CFG so far. The patch nodes (nodes/guidance.py) install them as a MODEL's sampler_cfg_function,
sampler_pre_cfg_function or sampler_post_cfg_function (see engine.sampling.guidance).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_sample(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.view(sigma.shape[:1] + (1,) * (like.ndim - 1))


def _std(t: torch.Tensor) -> torch.Tensor:
    return torch.std(t, dim=tuple(range(1, t.ndim)), keepdim=True)


def rescale_cfg(x, sigma, cond, uncond, cond_scale: float, multiplier: float) -> torch.Tensor:
    """RescaleCFG (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed"): CFG done on
    v-predictions, its result rescaled towards the positive prediction's standard deviation by `multiplier`."""
    sigma = _per_sample(sigma, cond)
    scaled_x = x / (sigma * sigma + 1.0)
    to_v = (sigma ** 2 + 1.0) ** 0.5 / sigma
    v_cond = (scaled_x - cond) * to_v
    v_uncond = (scaled_x - uncond) * to_v
    v_cfg = v_uncond + cond_scale * (v_cond - v_uncond)
    v_final = multiplier * v_cfg * (_std(v_cond) / _std(v_cfg)) + (1.0 - multiplier) * v_cfg
    return scaled_x - v_final * sigma / (sigma * sigma + 1.0) ** 0.5


def cfg_zero_star(x, guided, cond, uncond, cond_scale: float) -> torch.Tensor:
    """CFG-Zero* (Fan et al. 2025): the negative prediction scaled by the projection of the positive noise
    estimate onto the negative one before guidance."""
    positive, negative = (x - cond).flatten(1), (x - uncond).flatten(1)
    alpha = (positive * negative).sum(dim=1, keepdim=True) / ((negative ** 2).sum(dim=1, keepdim=True) + 1e-8)
    alpha = alpha.reshape((x.shape[0],) + (1,) * (x.ndim - 1))
    return guided + uncond * (alpha - 1.0) + cond_scale * uncond * (1.0 - alpha)


def cfg_norm(guided, cond, strength: float) -> torch.Tensor:
    """The guided prediction's per-pixel channel norm capped at the positive prediction's, times `strength`."""
    scale = (torch.norm(cond, dim=1, keepdim=True) / (torch.norm(guided, dim=1, keepdim=True) + 1e-8))
    return guided * scale.clamp(min=0.0, max=1.0) * strength


def mahiro(guided, cond, uncond, cond_scale: float) -> torch.Tensor:
    """Mahiro: a blend of the guided result and the positive prediction scaled by cfg alone, weighted by how much
    the (signed square roots of) their mean and the scaled negative agree."""
    leap = cond * cond_scale
    uncond_leap = uncond * cond_scale
    merge = (leap + guided) / 2
    similarity = F.cosine_similarity(torch.sqrt(uncond_leap.abs()) * uncond_leap.sign(),
                                     torch.sqrt(merge.abs()) * merge.sign()).mean()
    weight = 2 * (similarity + 1)
    return (weight * guided + (4 - weight) * leap) / 4


def tangential_damping(x, cond, uncond) -> torch.Tensor:
    """TCFG (Kwon et al. 2025): the negative prediction with the part of its noise estimate that is tangential
    to the main direction of the (negative, positive) pair removed."""
    batch = cond.shape[0]
    cond_score = (x - cond).reshape(batch, 1, -1).float()
    uncond_score = (x - uncond).reshape(batch, 1, -1).float()
    _, _, vh = torch.linalg.svd(torch.cat((uncond_score, cond_score), dim=1), full_matrices=False)
    direction = vh[:, 0:1, :]
    damped = (uncond_score @ direction.transpose(-2, -1)) * direction
    return x - damped.reshape_as(uncond).to(uncond.dtype)


def epsilon_scaling(x, guided, factor: float) -> torch.Tensor:
    """Epsilon scaling (Ning et al. 2023, exposure bias): the guided noise estimate divided by `factor`."""
    return x - (x - guided) / factor


def _project(v0, v1):
    """(the part of v0 along v1, the part orthogonal to it), per image."""
    dims = tuple(range(1, v0.ndim))
    unit = torch.nn.functional.normalize(v1, dim=dims)
    parallel = (v0 * unit).sum(dim=dims, keepdim=True) * unit
    return parallel, v0 - parallel


class AdaptiveProjectedGuidance:
    """APG (Sadat et al. 2024): the guidance (cond - uncond), optionally averaged with momentum over the steps
    of a run and capped in norm, split along and across the positive prediction; the part along it is scaled by
    `eta`. Returns the positive prediction that plain CFG turns into that guidance."""

    def __init__(self, eta: float, norm_threshold: float, momentum: float):
        self.eta, self.norm_threshold, self.momentum = eta, norm_threshold, momentum
        self.running, self.last_sigma = None, None

    def __call__(self, cond, uncond, sigma: float, cond_scale: float) -> torch.Tensor:
        if self.last_sigma is not None and sigma > self.last_sigma:  # a new sampling run: forget the average
            self.running = None
        self.last_sigma = sigma
        guidance = cond - uncond
        if self.momentum != 0:
            self.running = guidance if self.running is None else self.momentum * self.running + guidance
            guidance = self.running
        if self.norm_threshold > 0:
            norm = guidance.norm(p=2, dim=tuple(range(1, guidance.ndim)), keepdim=True)
            guidance = guidance * torch.minimum(torch.ones_like(norm), self.norm_threshold / norm)
        parallel, orthogonal = _project(guidance, cond)
        return uncond + orthogonal + self.eta * parallel + (cond - uncond) / cond_scale


def frequency_scaled(x: torch.Tensor, low: float, high: float, cutoff: int) -> torch.Tensor:
    """FreSca (Huang et al. 2025): `x` with its spatial frequencies within `cutoff` of zero scaled by `low`, the
    others by `high` (computed in float32)."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    mask = torch.full(freq.shape, high, device=x.device)
    centre = mask
    for dim in range(2, freq.ndim):
        middle = freq.shape[dim] // 2
        reach = min(cutoff, middle)
        centre = centre.narrow(dim, middle - reach, reach * 2)
    centre[:] = low
    filtered = torch.fft.ifftn(torch.fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return filtered.to(x.dtype)


def renorm_cfg(cond, uncond, cond_scale: float, renorm: float, channels: int) -> torch.Tensor:
    """RenormCFG (Lumina-Next / Lumina-Image 2.0): CFG on the first `channels` channels (the positive prediction
    keeps the others), its result scaled down per sample wherever its norm exceeds `renorm` times the positive
    prediction's; `renorm` 0 leaves it as it is."""
    cond_eps, rest, uncond_eps = cond[:, :channels], cond[:, channels:], uncond[:, :channels]
    guided = uncond_eps + cond_scale * (cond_eps - uncond_eps)
    if renorm > 0.0:
        dims = tuple(range(1, guided.ndim))
        limit = torch.linalg.vector_norm(cond_eps, dim=dims, keepdim=True) * renorm
        norm = torch.linalg.vector_norm(guided, dim=dims, keepdim=True)
        guided = torch.where(norm >= limit, guided * (limit / norm), guided)
    return torch.cat([guided, rest], dim=1)
