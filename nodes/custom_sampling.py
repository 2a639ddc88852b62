"""Custom sampling nodes: samplers, schedulers (SIGMAS), noise, guiders, and SamplerCustom(Advanced)."""
from __future__ import annotations

import math

import torch

from engine.sampling import schedules
from engine.sampling.guidance import DualCFGDenoiser, PerpNegDenoiser
from engine.sampling.run import Guider, Noise, Sampler, initial_noise_of, sample
from engine.sampling.samplers import SAMPLER_NAMES
from engine.sampling.samplers.sa_solver import tau_interval
from engine.sampling.schedules import SCHEDULER_NAMES

SEED_MAX = 0xFFFFFFFFFFFFFFFF
CATEGORY = "sampling/custom_sampling"
MODULE = "comfy_extras.nodes_custom_sampler"


def _sigma_input(default):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})


def _steps():
    return ("INT", {"default": 20, "min": 1, "max": 10000})


def _float(default: float, low: float = 0.0, high: float = 5000.0, step: float = 0.01) -> tuple:
    return ("FLOAT", {"default": default, "min": low, "max": high, "step": step, "round": False})


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


class _Scheduler(_Node):
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/schedulers"


class _SamplerNode(_Node):
    """A SAMPLER of the sampler `NAME` with the node's inputs as its options; `noise_device` "gpu" picks the
    sampler's _gpu variant (its Brownian noise drawn on the sampling device)."""

    NAME = ""
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = CATEGORY + "/samplers"

    def get_sampler(self, noise_device=None, **options):
        return (Sampler(self.NAME + ("_gpu" if noise_device == "gpu" else ""), options),)


def _noise_inputs(eta_max: float = 100.0, s_noise_max: float = 100.0) -> dict:
    return {"eta": _float(1.0, high=eta_max), "s_noise": _float(1.0, high=s_noise_max)}


class SamplerLMS(_SamplerNode):
    NAME = "lms"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"order": ("INT", {"default": 4, "min": 1, "max": 100})}}


class SamplerDPMPP_3M_SDE(_SamplerNode):
    NAME = "dpmpp_3m_sde"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**_noise_inputs(), "noise_device": (["gpu", "cpu"],)}}


class SamplerDPMPP_2M_SDE(_SamplerNode):
    NAME = "dpmpp_2m_sde"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"solver_type": (["midpoint", "heun"],), **_noise_inputs(),
                             "noise_device": (["gpu", "cpu"],)}}


class SamplerDPMPP_SDE(_SamplerNode):
    NAME = "dpmpp_sde"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**_noise_inputs(), "r": _float(0.5, high=100.0), "noise_device": (["gpu", "cpu"],)}}


class SamplerDPMPP_2S_Ancestral(_SamplerNode):
    NAME = "dpmpp_2s_ancestral"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": _noise_inputs()}


class SamplerEulerAncestralCFGPP(_SamplerNode):
    NAME = "euler_ancestral_cfg_pp"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": _noise_inputs(eta_max=1.0, s_noise_max=10.0)}


class SamplerDPMAdaptative(_SamplerNode):
    NAME = "dpm_adaptive"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"order": ("INT", {"default": 3, "min": 2, "max": 3}), "rtol": _float(0.05, high=100.0),
                             "atol": _float(0.0078, high=100.0), "h_init": _float(0.05, high=100.0),
                             "pcoeff": _float(0.0, high=100.0), "icoeff": _float(1.0, high=100.0),
                             "dcoeff": _float(0.0, high=100.0), "accept_safety": _float(0.81, high=100.0),
                             "eta": _float(0.0, high=100.0), "s_noise": _float(1.0, high=100.0)}}


class SamplerER_SDE(_SamplerNode):
    NAME = "er_sde"

    @classmethod
    def INPUT_TYPES(cls):
        eta = _float(1.0, high=100.0)
        eta[1]["tooltip"] = ("Stochastic strength of reverse-time SDE.\nWhen eta=0, it reduces to deterministic ODE. "
                             "This setting doesn't apply to ER-SDE solver type.")
        return {"required": {"solver_type": ("COMBO", {"options": ["ER-SDE", "Reverse-time SDE", "ODE"]}),
                             "max_stage": ("INT", {"default": 3, "min": 1, "max": 3}), "eta": eta,
                             "s_noise": _float(1.0, high=100.0)}}

    def get_sampler(self, solver_type, max_stage, eta, s_noise):
        """ER-SDE keeps the solver's own noise scaling; the reverse-time SDE scales by x^(eta + 1); the ODE (or
        eta 0) adds no noise."""
        if solver_type == "ODE" or (solver_type == "Reverse-time SDE" and eta == 0):
            eta, s_noise = 0, 0
        scaler = None if solver_type == "ER-SDE" else (lambda x: x ** (eta + 1))
        return super().get_sampler(s_noise=s_noise, noise_scaler=scaler, max_stage=max_stage)


class SamplerSASolver(_SamplerNode):
    NAME = "sa_solver"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}), "eta": _float(1.0, high=10.0),
            "sde_start_percent": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.001}),
            "sde_end_percent": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.001}),
            "s_noise": _float(1.0, high=100.0), "predictor_order": ("INT", {"default": 3, "min": 1, "max": 6}),
            "corrector_order": ("INT", {"default": 4, "min": 0, "max": 6}), "use_pece": ("BOOLEAN", {}),
            "simple_order_2": ("BOOLEAN", {})}}

    def get_sampler(self, model, eta, sde_start_percent, sde_end_percent, s_noise, predictor_order,
                    corrector_order, use_pece, simple_order_2):
        """Stochastic (at `eta`) between the sigmas of the two percentages, deterministic outside."""
        ms = model.model_sampling
        tau = tau_interval(ms.percent_to_sigma(sde_start_percent), ms.percent_to_sigma(sde_end_percent), eta=eta)
        return super().get_sampler(tau_func=tau, s_noise=s_noise, predictor_order=predictor_order,
                                   corrector_order=corrector_order, use_pece=use_pece, simple_order_2=simple_order_2)


class AddNoise(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "noise": ("NOISE",), "sigmas": ("SIGMAS",),
                             "latent_image": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "add_noise"
    CATEGORY = "_for_testing/custom_sampling/noise"

    def add_noise(self, model, noise, sigmas, latent_image):
        """The latent noised to the span of `sigmas` (its first sigma alone when it has one), as the model's
        sampling scales noise."""
        if len(sigmas) == 0:
            return (latent_image,)
        samples = latent_image["samples"]
        noisy = initial_noise_of(noise, latent_image, samples)
        scale = torch.abs(sigmas[0] - sigmas[-1]) if len(sigmas) > 1 else sigmas[0]
        if torch.count_nonzero(samples) > 0:  # an empty latent stays zero (no shift)
            samples = model.process_latent_in(samples)
        noisy = model.process_latent_out(model.model_sampling.noise_scaling(scale, noisy, samples))
        return (dict(latent_image, samples=torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0)),)


class BasicScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "scheduler": (SCHEDULER_NAMES,), "steps": _steps(),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model, scheduler, steps, denoise):
        if denoise <= 0.0:
            return (torch.FloatTensor([]),)
        total = steps if denoise >= 1.0 else int(steps / denoise)
        return (schedules.calculate_sigmas(model.model_sampling, scheduler, total)[-(steps + 1):].cpu(),)


class KarrasScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _steps(), "sigma_max": _sigma_input(14.614642),
                             "sigma_min": _sigma_input(0.0291675),
                             "rho": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False})}}

    def get_sigmas(self, steps, sigma_max, sigma_min, rho):
        return (schedules.get_sigmas_karras(n=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho),)


class ExponentialScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _steps(), "sigma_max": _sigma_input(14.614642),
                             "sigma_min": _sigma_input(0.0291675)}}

    def get_sigmas(self, steps, sigma_max, sigma_min):
        return (schedules.get_sigmas_exponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max),)


class SDTurboScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model, steps, denoise):
        # SD-Turbo was distilled on the timesteps 999, 899, ..., 99; denoise < 1 starts further down that list.
        start = 10 - int(10 * denoise)
        timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start:start + steps]
        sigmas = model.model_sampling.sigma(timesteps)
        return (torch.cat([sigmas, sigmas.new_zeros([1])]),)


class PolyexponentialScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _steps(), "sigma_max": _sigma_input(14.614642),
                             "sigma_min": _sigma_input(0.0291675), "rho": _float(1.0, high=100.0)}}

    def get_sigmas(self, steps, sigma_max, sigma_min, rho):
        return (schedules.get_sigmas_polyexponential(steps, sigma_min, sigma_max, rho),)


class LaplaceScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _steps(), "sigma_max": _sigma_input(14.614642),
                             "sigma_min": _sigma_input(0.0291675), "mu": _float(0.0, -10.0, 10.0, 0.1),
                             "beta": _float(0.5, 0.0, 10.0, 0.1)}}

    def get_sigmas(self, steps, sigma_max, sigma_min, mu, beta):
        return (schedules.get_sigmas_laplace(steps, sigma_min, sigma_max, mu, beta),)


class VPScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _steps(), "beta_d": _float(19.9), "beta_min": _float(0.1),
                             "eps_s": _float(0.001, high=1.0, step=0.0001)}}

    def get_sigmas(self, steps, beta_d, beta_min, eps_s):
        return (schedules.get_sigmas_vp(steps, beta_d, beta_min, eps_s),)


class BetaSamplingScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "steps": _steps(), "alpha": _float(0.6, high=50.0),
                             "beta": _float(0.6, high=50.0)}}

    def get_sigmas(self, model, steps, alpha, beta):
        return (schedules.beta_schedule(model.model_sampling, steps, alpha=alpha, beta=beta),)


class _TabulatedScheduler(_Scheduler):
    MODEL_TYPES: list[str] = []
    STEPS = {"default": 10, "min": 1, "max": 10000}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_type": ("COMBO", {"multiselect": False, "options": cls.MODEL_TYPES}),
                             "steps": ("INT", cls.STEPS),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    OUTPUT_TOOLTIPS = (None,)
    DISPLAY_NAME = None
    API_NODE = False

    def get_sigmas(self, model_type, steps, denoise):
        return (schedules.tabulated_sigmas(model_type, steps, denoise),)


class AlignYourStepsScheduler(_TabulatedScheduler):
    MODEL_TYPES = ["SD1", "SDXL", "SVD"]
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_align_your_steps"


class OptimalStepsScheduler(_TabulatedScheduler):
    MODEL_TYPES = ["FLUX", "Wan", "Chroma"]
    STEPS = {"default": 20, "min": 3, "max": 1000}
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_optimalsteps"


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


class SplitSigmasDenoise(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY + "/sigmas"

    def get_sigmas(self, sigmas, denoise):
        """The last `denoise` of the steps are the low sigmas; the high ones end where they start."""
        low = round(max(sigmas.shape[-1] - 1, 0) * denoise)
        return sigmas[:-low], sigmas[-(low + 1):]


class SetFirstSigma(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",), "sigma": _float(136.0, high=20000.0, step=0.001)}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "set_first_sigma"
    CATEGORY = CATEGORY + "/sigmas"

    def set_first_sigma(self, sigmas, sigma):
        sigmas = sigmas.clone()
        sigmas[0] = sigma
        return (sigmas,)


class ExtendIntermediateSigmas(_Node):
    SPACINGS = {"linear": lambda x: x, "cosine": lambda x: torch.sin(x * math.pi / 2),
                "sine": lambda x: 1 - torch.cos(x * math.pi / 2)}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",), "steps": ("INT", {"default": 2, "min": 1, "max": 100}),
                             "start_at_sigma": _float(-1.0, -1.0, 20000.0),
                             "end_at_sigma": _float(12.0, 0.0, 20000.0), "spacing": (list(cls.SPACINGS),)}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "extend"
    CATEGORY = CATEGORY + "/sigmas"

    def extend(self, sigmas, steps, start_at_sigma, end_at_sigma, spacing):
        """`steps - 1` more sigmas inside each step whose start lies in [end_at_sigma, start_at_sigma] (a negative
        start: no upper bound), spaced by `spacing`."""
        top = float("inf") if start_at_sigma < 0 else start_at_sigma
        fractions = self.SPACINGS[spacing](torch.linspace(0, 1, steps + 1, device=sigmas.device)[1:-1])
        out = []
        for current, following in zip(sigmas[:-1], sigmas[1:]):
            out.append(current)
            if end_at_sigma <= current <= top:
                out.extend((fractions * (following - current) + current).tolist())
        if len(sigmas) > 0:
            out.append(sigmas[-1])
        return (torch.FloatTensor(out),)


class SamplingPercentToSigma(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "sampling_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.0001}),
            "return_actual_sigma": ("BOOLEAN", {"default": False, "tooltip": "Return the actual sigma value instead "
                                                "of the value used for interval checks.\nThis only affects results "
                                                "at 0.0 and 1.0."})}}

    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("sigma_value",)
    FUNCTION = "get_sigma"
    CATEGORY = CATEGORY + "/sigmas"

    def get_sigma(self, model, sampling_percent, return_actual_sigma):
        ms = model.model_sampling
        if return_actual_sigma and sampling_percent in (0.0, 1.0):
            return (float(ms.sigma_max if sampling_percent == 0.0 else ms.sigma_min),)
        return (float(ms.percent_to_sigma(sampling_percent)),)


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
    SamplerCustom, SamplerCustomAdvanced, PolyexponentialScheduler, LaplaceScheduler, VPScheduler,
    BetaSamplingScheduler, SplitSigmasDenoise, SetFirstSigma, ExtendIntermediateSigmas, SamplingPercentToSigma,
    SamplerLMS, SamplerDPMPP_3M_SDE, SamplerDPMPP_2M_SDE, SamplerDPMPP_SDE, SamplerDPMPP_2S_Ancestral,
    SamplerEulerAncestralCFGPP, AddNoise, AlignYourStepsScheduler, OptimalStepsScheduler, SamplerDPMAdaptative,
    SamplerER_SDE, SamplerSASolver)}
NODE_DISPLAY_NAME_MAPPINGS = {"SamplerEulerAncestralCFGPP": "SamplerEulerAncestralCFG++"}
