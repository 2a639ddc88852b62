"""`comfy.samplers`: the sampler and scheduler names custom nodes offer in their own combos, the KSampler object
that samples with a MODEL (what comfy.sample.sample uses), SAMPLER values by name, and the batched model call that
guidance patches run the model with."""
from __future__ import annotations

import torch

from engine.sampling import run, schedules
from engine.sampling.guidance import calc_cond_batch as _calc_cond_batch, cfg_function
from engine.sampling.samplers import SAMPLER_NAMES
from engine.sampling.schedules import SCHEDULER_NAMES, calculate_sigmas  # noqa: F401 (re-exported)

# ComfyUI's comfy.samplers imports comfy.model_patcher, and packs that imported only this reach it as an attribute
from . import model_patcher  # noqa: F401

KSAMPLER_NAMES = SAMPLER_NAMES


class _GivenNoise(run.Noise):
    """Noise a caller made itself (ComfyUI's sampling functions take the tensor, not a seed)."""

    def __init__(self, tensor: torch.Tensor, seed: int | None):
        super().__init__(seed)
        self.tensor = tensor

    def generate(self, latent: dict, latent_image: torch.Tensor) -> torch.Tensor:
        return self.tensor


def sample(model, noise, positive, negative, cfg, device, sampler, sigmas, model_options=None, latent_image=None,
           denoise_mask=None, callback=None, disable_pbar=False, seed=None) -> torch.Tensor:
    """`latent_image` (zeros when None) plus `noise`, denoised down `sigmas` with classifier-free guidance by
    `sampler` (a SAMPLER value); `callback(step, x0, x, total_steps)` replaces comfyd's own progress report.
    The MODEL's own model_options apply (ComfyUI passes them in as `model_options`)."""
    latent = {"samples": torch.zeros_like(noise) if latent_image is None else latent_image}
    if denoise_mask is not None:
        latent["noise_mask"] = denoise_mask
    out, _ = run.sample(run.Guider(model, positive, negative, cfg), sampler, sigmas, latent,
                        _GivenNoise(noise, seed), callback=callback)
    return out["samples"]


def sampler_object(name: str) -> run.Sampler:
    """The SAMPLER value of a KSampler sampler name (what KSamplerSelect outputs)."""
    return run.Sampler(name)


class KSampler:
    SAMPLERS = SAMPLER_NAMES
    SCHEDULERS = SCHEDULER_NAMES
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = schedules.DISCARD_PENULTIMATE_SIGMA_SAMPLERS

    def __init__(self, model, steps, device=None, sampler=None, scheduler=None, denoise=None, model_options=None):
        self.model = model
        self.device = device
        self.sampler = sampler if sampler in self.SAMPLERS else self.SAMPLERS[0]
        self.scheduler = scheduler if scheduler in self.SCHEDULERS else self.SCHEDULERS[0]
        self.denoise = denoise
        self.set_steps(steps, denoise)

    def set_steps(self, steps, denoise=None) -> None:
        """`sigmas`: `steps` steps of the scheduler, the last `steps` of a longer schedule for partial denoise."""
        self.steps = steps
        self.sigmas = schedules.sigmas_for(self.model.model_sampling, self.scheduler, steps, denoise, self.sampler)

    def sample(self, noise, positive, negative, cfg, latent_image=None, start_step=None, last_step=None,
               force_full_denoise=False, denoise_mask=None, sigmas=None, callback=None, disable_pbar=False,
               seed=None) -> torch.Tensor:
        """The sampled latent, over steps `start_step` to `last_step` of `sigmas` (default: this sampler's)."""
        sigmas = schedules.trim_sigmas(self.sigmas if sigmas is None else sigmas, start_step, last_step,
                                       force_full_denoise)
        if sigmas is None:  # nothing left to run
            return torch.zeros_like(noise) if latent_image is None else latent_image
        return sample(self.model, noise, positive, negative, cfg, self.device, sampler_object(self.sampler), sigmas,
                      latent_image=latent_image, denoise_mask=denoise_mask, callback=callback, seed=seed)


def calc_cond_batch(model, conds, x_in, timestep, model_options=None):
    """The model's prediction for each conditioning list (as a patch function's args hand them over)."""
    return _calc_cond_batch(model, conds, x_in, timestep, model_options)


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options=None, seed=None):
    """The guided prediction at `timestep`: the conditional and unconditional predictions combined by
    classifier-free guidance at `cond_scale` (with the model's cfg patches)."""
    options = model_options or {}
    cond_pred, uncond_pred = _calc_cond_batch(model, [cond, uncond], x, timestep, options)
    return cfg_function(model, options, cond_pred, uncond_pred, cond_scale, x, timestep, cond=cond, uncond=uncond)


class KSamplerX0Inpaint:
    """ComfyUI's wrapper that keeps the unmasked part of an inpainting latent during sampling. comfyd applies the
    denoise mask inside its own sampling loop, so packs may import this name but making one raises
    NotImplementedError."""

    def __init__(self, model, sigmas):
        raise NotImplementedError("comfyd applies denoise masks in its sampling loop: KSamplerX0Inpaint is not "
                                  "available; pass denoise_mask to comfy.samplers.KSampler.sample")


class KSAMPLER(run.Sampler):
    """ComfyUI's SAMPLER of a sampler function, for packs that define samplers at import. comfyd samples with its
    own samplers by name, so sampling with one whose function is not among them fails."""

    def __init__(self, sampler_function, extra_options=None, inpaint_options=None):
        super().__init__(getattr(sampler_function, "__name__", "custom"), dict(extra_options or {}))
        self.sampler_function = sampler_function
        self.inpaint_options = inpaint_options or {}


class CFGGuider(run.Guider):
    """A GUIDER value made as ComfyUI's: from the model, then `set_conds` and `set_cfg`."""

    def __init__(self, model_patcher):
        super().__init__(model_patcher, [], [])
        self.model_patcher = model_patcher
        self.model_options = getattr(model_patcher, "model_options", {})

    def set_conds(self, positive, negative=None) -> None:
        self.positive, self.negative = positive, negative

    def set_cfg(self, cfg: float) -> None:
        self.cfg = cfg
