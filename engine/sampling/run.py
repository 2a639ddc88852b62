"""Sampling end to end, as ComfyUI's KSampler / SamplerCustom do it: noise from the seed, sigmas, conditioning,
guidance, the sampler, progress and previews, for a DiffusionModel and LATENT / CONDITIONING values."""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .. import context
from . import ksampler, noise as noise_mod, schedules
from .guidance import (CFGDenoiser, add_opposite_areas, prepare, share_control_with_uncond,
                       share_gligen_with_uncond)
from .preview import guarded, previewer


@dataclasses.dataclass
class Guider:
    """GUIDER values: what to denoise with. `negative` None means no unconditional pass (BasicGuider). `others`
    are further named conditionings (prepared as negative prompts) that `denoiser(model, {name: conds})` combines
    with these two; without it, classifier-free guidance at `cfg`."""
    model: object
    positive: list
    negative: list | None = None
    cfg: float = 1.0
    others: dict = dataclasses.field(default_factory=dict)
    denoiser: Callable | None = None


@dataclasses.dataclass
class Noise:
    """NOISE values: a seed, or no noise at all (DisableNoise)."""
    seed: int = 0
    enabled: bool = True

    def generate(self, latent: dict, latent_image: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout)
        return noise_mod.prepare_noise(latent_image, self.seed, latent.get("batch_index"))


@dataclasses.dataclass
class Sampler:
    """SAMPLER values: a sampler name and its options (eta, s_noise, ...)."""
    name: str
    options: dict = dataclasses.field(default_factory=dict)


def initial_noise_of(noise, latent: dict, latent_image: torch.Tensor) -> torch.Tensor:
    """The noise a NOISE value gives: comfyd's Noise, or any object with ComfyUI's protocol (`generate_noise(latent)`
    and `seed`), as custom nodes make them."""
    if hasattr(noise, "generate"):
        return noise.generate(latent, latent_image)
    return noise.generate_noise(dict(latent, samples=latent_image))


def match_channels(latent: torch.Tensor, channels: int = 4) -> torch.Tensor:
    """An all-zero latent with another channel count (made for another model family) is resized to fit."""
    if latent.shape[1] != channels and torch.count_nonzero(latent) == 0:
        return torch.zeros((latent.shape[0], channels) + tuple(latent.shape[2:]), dtype=latent.dtype)
    return latent


def sample(guider: Guider, sampler: Sampler, sigmas: torch.Tensor, latent: dict, noise: Noise,
           callback: Callable | None = None) -> tuple[dict, dict]:
    """(output LATENT, denoised-x0 LATENT) for sampling `latent` down `sigmas`. `callback(step, x0, x, total)`,
    when given, is called at each step in place of comfyd's progress and preview report (ComfyUI's sampler
    callback, which reports them itself)."""
    model = guider.model
    latent_image = match_channels(latent["samples"], model.latent_channels)
    out = dict(latent, samples=latent_image)
    if sigmas.shape[-1] <= 1:  # nothing to run: the latent passes through
        return out, out
    initial_noise = initial_noise_of(noise, latent, latent_image)
    seed = getattr(noise, "seed", 0)
    device = model.manager.device if model.manager else torch.device("cpu")
    initial_noise, latent_image, sigmas = initial_noise.to(device), latent_image.to(device), sigmas.to(device)
    if torch.count_nonzero(latent_image) > 0:  # an empty latent stays zero (ComfyUI skips the shift too)
        latent_image = model.process_latent_in(latent_image)
    mask = latent.get("noise_mask")
    if mask is not None:
        mask = ksampler.reshape_mask(mask, initial_noise.shape).to(device)

    def conds(values, kind):
        if values is None:
            return None
        return prepare(values, model, initial_noise, latent_image=latent_image, denoise_mask=mask, prompt_type=kind,
                       seed=seed)

    prepared = {"positive": conds(guider.positive, "positive"), "negative": conds(guider.negative, "negative"),
                **{name: conds(values, "negative") for name, values in guider.others.items()}}
    present = [values for values in prepared.values() if values is not None]
    for values in present:  # every area prompt gets a counterpart in each other list
        for others in present:
            if others is not values:
                add_opposite_areas(values, others)
    if prepared["negative"] is not None:
        share_control_with_uncond(prepared["positive"], prepared["negative"])
        share_gligen_with_uncond(prepared["positive"], prepared["negative"])
    if guider.denoiser is not None:
        denoiser = guider.denoiser(model, prepared)
    else:
        denoiser = CFGDenoiser(model, prepared["positive"], prepared["negative"], guider.cfg)
    total = len(sigmas) - 1
    ctx = context.current()
    reports = ctx is not None and callback is None
    to_image = previewer(ctx.preview_method, model.family, model.manager) if reports else None
    to_image = guarded(to_image) if to_image is not None else None
    last = {}

    def preview_of(x0):
        image = to_image(x0)
        return ("JPEG", image, 512) if image is not None else None

    def on_step(info):
        last["x0"] = info["denoised"]
        if ctx is not None:
            ctx.check_interrupted()
        if callback is not None:
            callback(info["i"], info["denoised"], info["x"], total)
        elif reports:
            ctx.progress(info["i"] + 1, total, preview_of(info["denoised"]) if to_image is not None else None)

    samples = ksampler.sample(sampler.name, denoiser, initial_noise, latent_image, sigmas, seed=seed,
                              denoise_mask=mask, callback=on_step, options=sampler.options,
                              denoise_mask_function=getattr(model, "model_options", {}).get("denoise_mask_function"))
    out["samples"] = model.process_latent_out(samples.to(torch.float32)).cpu()
    denoised = dict(out, samples=model.process_latent_out(last["x0"].float()).cpu()) if "x0" in last else out
    return out, denoised


def ksample(model, latent: dict, *, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
            positive: list, negative: list, denoise: float = 1.0, disable_noise: bool = False,
            start_step: int | None = None, last_step: int | None = None, force_full_denoise: bool = False) -> dict:
    """KSampler / KSamplerAdvanced."""
    sigmas = schedules.sigmas_for(model.model_sampling, scheduler, steps, denoise, sampler_name)
    sigmas = schedules.trim_sigmas(sigmas, start_step, last_step, force_full_denoise)
    if sigmas is None:
        sigmas = torch.zeros(0)
    out, _ = sample(Guider(model, positive, negative, cfg), Sampler(sampler_name), sigmas, latent,
                    Noise(seed, enabled=not disable_noise))
    return out
