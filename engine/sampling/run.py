"""KSampler end to end: noise from the seed, sigmas, conditioning, guidance, the sampler, progress and previews
(what ComfyUI's common_ksampler does), for a DiffusionModel and LATENT / CONDITIONING values."""
from __future__ import annotations

import torch

from .. import context
from . import ksampler, noise as noise_mod, schedules
from .guidance import CFGDenoiser, add_opposite_areas, prepare
from .preview import latent_to_image


def _match_channels(model, latent: torch.Tensor) -> torch.Tensor:
    """An all-zero latent with the wrong channel count (from another model family) is resized to fit."""
    channels = 4
    if latent.shape[1] != channels and torch.count_nonzero(latent) == 0:
        return torch.zeros((latent.shape[0], channels) + tuple(latent.shape[2:]), dtype=latent.dtype)
    return latent


def ksample(model, latent: dict, *, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
            positive: list, negative: list, denoise: float = 1.0, disable_noise: bool = False,
            start_step: int | None = None, last_step: int | None = None, force_full_denoise: bool = False) -> dict:
    latent_image = _match_channels(model, latent["samples"])
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout)
    else:
        noise = noise_mod.prepare_noise(latent_image, seed, latent.get("batch_index"))
    sigmas = schedules.sigmas_for(model.model_sampling, scheduler, steps, denoise, sampler_name)
    sigmas = schedules.trim_sigmas(sigmas, start_step, last_step, force_full_denoise)
    out = dict(latent)
    if sigmas is None or sigmas.shape[-1] == 0:
        out["samples"] = latent_image
        return out
    device = model.manager.device if model.manager else torch.device("cpu")
    noise, latent_image, sigmas = noise.to(device), latent_image.to(device), sigmas.to(device)
    if torch.count_nonzero(latent_image) > 0:  # an empty latent stays zero (ComfyUI skips the shift too)
        latent_image = model.process_latent_in(latent_image)
    mask = latent.get("noise_mask")
    if mask is not None:
        mask = ksampler.reshape_mask(mask, noise.shape).to(device)

    def conds(values, kind):
        return prepare(values, model, noise, latent_image=latent_image, denoise_mask=mask, prompt_type=kind)

    pos, neg = conds(positive, "positive"), conds(negative, "negative")
    add_opposite_areas(pos, neg)
    add_opposite_areas(neg, pos)
    denoiser = CFGDenoiser(model, pos, neg, cfg)
    total = len(sigmas) - 1
    ctx = context.current()

    def on_step(info):
        if ctx is None:
            return
        ctx.check_interrupted()
        preview = None
        if ctx.preview_method in ("auto", "latent2rgb"):
            preview = ("JPEG", latent_to_image(info["denoised"], model.family), 512)
        ctx.progress(info["i"] + 1, total, preview)

    samples = ksampler.sample(sampler_name, denoiser, noise, latent_image, sigmas, seed=seed, denoise_mask=mask,
                              callback=on_step)
    out["samples"] = model.process_latent_out(samples.to(torch.float32)).cpu()
    return out
