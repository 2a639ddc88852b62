"""Custom sampling nodes: samplers, schedulers (SIGMAS), noise, guiders, and SamplerCustom(Advanced)."""
from __future__ import annotations

import torch

from engine.sampling import schedules
from engine.sampling.guidance import DualCFGDenoiser, PerpNegDenoiser
from engine.sampling.run import Guider, Noise, Sampler, sample
from engine.sampling.samplers import SAMPLER_NAMES
from engine.sampling.schedules import SCHEDULER_NAMES

SEED_MAX = 0xFFFFFFFFFFFFFFFF
CATEGORY = "sampling/custom_sampling"
MODULE = "comfy_extras.nodes_custom_sampler"


def _sigma_input(default):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})


def _steps():
    return ("INT", {"default": 20, "min": 1, "max": 10000})


class _Node:
    RELATIVE_PYTHON_MODULE = MODULE


class KSamplerSelect(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sampler_name": (SAMPLER_NAMES,)}}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = CATEGORY + "/samplers"

    def get_sampler(self, sampler_name):
        return (Sampler(sampler_name),)


class SamplerEulerAncestral(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        value = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False})
        return {"required": {"eta": value, "s_noise": value}}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = CATEGORY + "/samplers"

    def get_sampler(self, eta, s_noise):
        return (Sampler("euler_ancestral", {"eta": eta, "s_noise": s_noise}),)


class BasicScheduler(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "scheduler": (SCHEDULER_NAMES,), "steps": _steps(),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/schedulers"

    def get_sigmas(self, model, scheduler, steps, denoise):
        if denoise <= 0.0:
            return (torch.FloatTensor([]),)
        total = steps if denoise >= 1.0 else int(steps / denoise)
        return (schedules.calculate_sigmas(model.model_sampling, scheduler, total)[-(steps + 1):].cpu(),)


class KarrasScheduler(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _steps(), "sigma_max": _sigma_input(14.614642),
                             "sigma_min": _sigma_input(0.0291675),
                             "rho": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False})}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/schedulers"

    def get_sigmas(self, steps, sigma_max, sigma_min, rho):
        return (schedules.get_sigmas_karras(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho),)


class ExponentialScheduler(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _steps(), "sigma_max": _sigma_input(14.614642),
                             "sigma_min": _sigma_input(0.0291675)}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/schedulers"

    def get_sigmas(self, steps, sigma_max, sigma_min):
        return (schedules.get_sigmas_exponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max),)


class SDTurboScheduler(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/schedulers"

    def get_sigmas(self, model, steps, denoise):
        # SD-Turbo was distilled on the timesteps 999, 899, ..., 99; denoise < 1 starts further down that list.
        start = 10 - int(10 * denoise)
        timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start:start + steps]
        sigmas = model.model_sampling.sigma(timesteps)
        return (torch.cat([sigmas, sigmas.new_zeros([1])]),)


class SplitSigmas(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",), "step": ("INT", {"default": 0, "min": 0, "max": 10000})}}

    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/sigmas"

    def get_sigmas(self, sigmas, step):
        return sigmas[:step + 1], sigmas[step:]


class FlipSigmas(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",)}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/sigmas"

    def get_sigmas(self, sigmas):
        if len(sigmas) == 0:
            return (sigmas,)
        sigmas = sigmas.flip(0)
        if sigmas[0] == 0:
            sigmas[0] = 0.0001
        return (sigmas,)


class RandomNoise(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX,
                                                    "control_after_generate": True})}}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = CATEGORY + "/noise"

    def get_noise(self, noise_seed):
        return (Noise(noise_seed),)


class DisableNoise(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = CATEGORY + "/noise"

    def get_noise(self):
        return (Noise(0, enabled=False),)


class BasicGuider(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = CATEGORY + "/guiders"

    def get_guider(self, model, conditioning):
        return (Guider(model, conditioning),)


class CFGGuider(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})}}

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = CATEGORY + "/guiders"

    def get_guider(self, model, positive, negative, cfg):
        return (Guider(model, positive, negative, cfg),)


class DualCFGGuider(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        cfg = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})
        return {"required": {"model": ("MODEL",), "cond1": ("CONDITIONING",), "cond2": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "cfg_conds": cfg, "cfg_cond2_negative": cfg,
                             "style": (["regular", "nested"],)}}

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = CATEGORY + "/guiders"

    def get_guider(self, model, cond1, cond2, negative, cfg_conds, cfg_cond2_negative, style):
        def denoiser(model_, conds):
            return DualCFGDenoiser(model_, conds["positive"], conds["middle"], conds["negative"], cfg_conds,
                                   cfg_cond2_negative, nested=style == "nested")
        return (Guider(model, cond1, negative, others={"middle": cond2}, denoiser=denoiser),)


class PerpNegGuider:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}), "positive": ("CONDITIONING", {}), "negative": ("CONDITIONING", {}),
            "empty_conditioning": ("CONDITIONING", {}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "neg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("GUIDER",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "get_guider"
    CATEGORY = "_for_testing"
    DISPLAY_NAME = None
    EXPERIMENTAL = True
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_perpneg"

    def get_guider(self, model, positive, negative, empty_conditioning, cfg, neg_scale):
        def denoiser(model_, conds):
            return PerpNegDenoiser(model_, conds["positive"], conds["negative"], conds["empty_negative_prompt"], cfg,
                                   neg_scale)
        return (Guider(model, positive, negative, cfg, others={"empty_negative_prompt": empty_conditioning},
                       denoiser=denoiser),)


class SamplerCustom(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",), "add_noise": ("BOOLEAN", {"default": True}),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "sampler": ("SAMPLER",),
            "sigmas": ("SIGMAS",), "latent_image": ("LATENT",),
        }}

    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    def sample(self, model, add_noise, noise_seed, cfg, positive, negative, sampler, sigmas, latent_image):
        noise = Noise(noise_seed) if add_noise else Noise(0, enabled=False)
        return sample(Guider(model, positive, negative, cfg), sampler, sigmas, latent_image, noise)


class SamplerCustomAdvanced(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise": ("NOISE",), "guider": ("GUIDER",), "sampler": ("SAMPLER",),
                             "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}

    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    def sample(self, noise, guider, sampler, sigmas, latent_image):
        return sample(guider, sampler, sigmas, latent_image, noise)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (
    KSamplerSelect, SamplerEulerAncestral, BasicScheduler, KarrasScheduler, ExponentialScheduler, SDTurboScheduler,
    SplitSigmas, FlipSigmas, RandomNoise, DisableNoise, BasicGuider, CFGGuider, DualCFGGuider, PerpNegGuider,
    SamplerCustom, SamplerCustomAdvanced)}
NODE_DISPLAY_NAME_MAPPINGS = {}
