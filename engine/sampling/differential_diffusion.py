"""Differential diffusion: a soft (gradient) noise mask becomes a hard one that grows as sampling goes on, so each
region is regenerated for the share of the steps its mask value asks for (ComfyUI's DifferentialDiffusion)."""
from __future__ import annotations

import functools

import torch


def threshold_mask(sigma: torch.Tensor, denoise_mask: torch.Tensor, extra_options: dict,
                   strength: float = 1.0) -> torch.Tensor:
    """The mask for one model call at ``sigma``: 1 where ``denoise_mask`` reaches how far (in timesteps) the run
    still has to go, 0 elsewhere; a ``strength`` below 1 blends that with the soft mask. The run goes from its
    first sigma down to its last, or the model's smallest sigma when the run ends at 0."""
    ms, sigmas = extra_options["model_sampling"], extra_options["sigmas"]
    sigma_to = torch.maximum(sigmas[-1], ms.sigma_min.to(sigmas))
    ts_from, ts_to, current = ms.timestep(sigmas[0]), ms.timestep(sigma_to), ms.timestep(sigma[0])
    threshold = (current - ts_to) / (ts_from - ts_to)
    binary = (denoise_mask >= threshold).to(denoise_mask.dtype)
    if strength and strength < 1:
        return strength * binary + (1 - strength) * denoise_mask
    return binary


def mask_function(strength: float = 1.0):
    """The ``model_options["denoise_mask_function"]`` that DifferentialDiffusion sets."""
    return functools.partial(threshold_mask, strength=strength)
