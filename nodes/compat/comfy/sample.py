"""`comfy.sample`: KSampler-style sampling with a noise tensor the caller made, for custom nodes. Each function is
a plain module attribute that packs may rebind (nodes.common_ksampler looks them up when called); `sample` goes
through comfy.samplers.KSampler, as in ComfyUI, so patching that class changes it too."""
from __future__ import annotations

import numpy as np  # noqa: F401 (packs take `np` from this module, as ComfyUI's imports it)
import torch

from engine.sampling import noise as noise_mod
from engine.sampling.run import match_channels

from . import samplers


def prepare_noise(latent_image: torch.Tensor, seed: int, noise_inds=None) -> torch.Tensor:
    """Gaussian noise shaped like `latent_image` for `seed` (`noise_inds`: the latent's batch_index)."""
    return noise_mod.prepare_noise(latent_image, seed, noise_inds)


def fix_empty_latent_channels(model, latent_image: torch.Tensor) -> torch.Tensor:
    """An all-zero latent made for another latent space, resized to the model's channel count."""
    return match_channels(latent_image, model.latent_channels)


def sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0,
           disable_noise=False, start_step=None, last_step=None, force_full_denoise=False, noise_mask=None,
           sigmas=None, callback=None, disable_pbar=False, seed=None) -> torch.Tensor:
    """The sampled latent (not a LATENT dict): `latent_image` plus `noise`, denoised as KSampler(Advanced) does.
    `disable_noise` is ComfyUI's leftover: the caller passes zeros as `noise` instead."""
    sampler = samplers.KSampler(model, steps=steps, sampler=sampler_name, scheduler=scheduler, denoise=denoise)
    return sampler.sample(noise, positive, negative, cfg=cfg, latent_image=latent_image, start_step=start_step,
                          last_step=last_step, force_full_denoise=force_full_denoise, denoise_mask=noise_mask,
                          sigmas=sigmas, callback=callback, seed=seed)


def sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image, noise_mask=None,
                  callback=None, disable_pbar=False, seed=None) -> torch.Tensor:
    """SamplerCustom's sampling: `sampler` is a SAMPLER value, `sigmas` the schedule to run."""
    return samplers.sample(model, noise, positive, negative, cfg, None, sampler, sigmas, latent_image=latent_image,
                           denoise_mask=noise_mask, callback=callback, seed=seed)
