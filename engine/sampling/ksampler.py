"""KSampler's pipeline around one sampler run: start-noise scaling, inpainting mask, dispatch, inverse scaling.

What stays with the caller (it needs the model, not just its sigmas): ``process_latent_in`` on a non-empty
latent before, ``process_latent_out`` and the cast to float32 after, building the guided denoiser (CFG) and
moving noise / latent / sigmas onto the model's device.
"""
from __future__ import annotations

import math

import torch

from .noise import inpaint_noise_for_ddim
from .samplers import NODE_SAMPLERS, SAMPLERS
from .samplers.common import denoise_with_uncond, model_sampling_of
from .schedules import is_max_denoise


def reshape_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Fit an image-space noise mask to a (B, C, H, W) latent: bilinear resize, repeat channels and batch."""
    mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
    mask = torch.nn.functional.interpolate(mask, size=tuple(shape[2:]), mode="bilinear")
    if mask.shape[1] < shape[1]:
        mask = mask.repeat((1, shape[1], 1, 1))[:, :shape[1]]
    if mask.shape[0] > shape[0]:
        return mask.narrow(0, 0, shape[0])
    if mask.shape[0] < shape[0]:
        return mask.repeat((math.ceil(shape[0] / mask.shape[0]), 1, 1, 1)).narrow(0, 0, shape[0])
    return mask


class _MaskedDenoiser:
    """Inpainting: outside the mask (mask 0) the model sees and returns the original latent at the current
    noise level, so only the masked region is generated.

    ``mask_function`` (a MODEL's ``model_options["denoise_mask_function"]``, e.g. DifferentialDiffusion) makes
    the mask of each call: ``mask_function(sigma, mask, extra_options={"model_sampling": ..., "sigmas": ...})``,
    ``sigmas`` being the whole run's."""

    def __init__(self, model, latent_image: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                 sigmas: torch.Tensor, mask_function=None):
        self.inner = model
        self.model_sampling = model_sampling_of(model)
        self.latent_image = latent_image
        self.noise = noise
        self.mask = mask
        self.sigmas = sigmas
        self.mask_function = mask_function

    def _mask_at(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.mask_function is None:
            return self.mask
        return self.mask_function(sigma, self.mask,
                                  extra_options={"model_sampling": self.model_sampling, "sigmas": self.sigmas})

    def _masked_input(self, x: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        sigma = sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1))
        keep = self.model_sampling.noise_scaling(sigma, self.noise, self.latent_image)
        return x * mask + keep * (1.0 - mask)

    def _masked_output(self, denoised: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return denoised * mask + self.latent_image * (1.0 - mask)

    def __call__(self, x, sigma, **extra_args):
        mask = self._mask_at(sigma)
        return self._masked_output(self.inner(self._masked_input(x, sigma, mask), sigma, **extra_args), mask)

    def denoise_with_uncond(self, x, sigma, **extra_args):
        mask = self._mask_at(sigma)
        denoised, uncond = denoise_with_uncond(self.inner, self._masked_input(x, sigma, mask), sigma, extra_args)
        return self._masked_output(denoised, mask), uncond


def sample(sampler_name: str, model, noise: torch.Tensor, latent_image: torch.Tensor, sigmas: torch.Tensor, *,
           seed: int | None = None, denoise_mask: torch.Tensor | None = None, callback=None,
           options: dict | None = None, denoise_mask_function=None) -> torch.Tensor:
    """Run ``sampler_name`` from ``latent_image`` + noise down the ``sigmas``; returns the sampled latent.

    ``model`` follows the denoiser protocol (``samplers.common``) and is called with ``seed=seed`` among its
    keyword arguments. ``denoise_mask`` (already shaped like the latent, see ``reshape_mask``) limits
    generation to where it is 1; ``denoise_mask_function`` remakes it at each call (see ``_MaskedDenoiser``).
    ``options`` are the sampler's keyword options (eta, s_noise, ...).
    An empty ``sigmas`` (denoise 0) returns ``latent_image`` untouched; upstream then also skips the latent
    format's in/out processing.
    """
    if sigmas.shape[-1] == 0:
        return latent_image
    sampler = SAMPLERS.get(sampler_name) or NODE_SAMPLERS.get(sampler_name)
    if sampler is None:
        raise ValueError(f"unknown sampler {sampler_name!r}")
    ms = model_sampling_of(model)
    if denoise_mask is not None:
        mask_noise = inpaint_noise_for_ddim(noise, seed) if sampler_name == "ddim" else noise
        model = _MaskedDenoiser(model, latent_image, mask_noise, denoise_mask, sigmas, denoise_mask_function)
    x = ms.noise_scaling(sigmas[0], noise, latent_image, is_max_denoise(ms, sigmas))
    out = sampler(model, x, sigmas, extra_args={"seed": seed}, callback=callback, **(options or {}))
    return ms.inverse_noise_scaling(sigmas[-1], out)
