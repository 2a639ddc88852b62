"""Nodes that change how a MODEL maps sigmas to its inputs and outputs."""
from __future__ import annotations

from engine.sampling.model_sampling import (ContinuousModelSampling, DistilledModelSampling, FlowModelSampling,
                                            FluxModelSampling, discrete_model_sampling, flux_shift_for_size)

from .image import MAX_RESOLUTION


class ModelSamplingSD3:
    """Rectified-flow sampling with the network's timestep 1000 * sigma (SD3 / SD3.5), its time schedule shifted
    by `shift`."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "shift": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

    def patch(self, model, shift, multiplier=1000):
        model = model.clone()
        model.model_sampling = FlowModelSampling(shift=shift, multiplier=multiplier)
        return (model,)


class ModelSamplingAuraFlow(ModelSamplingSD3):
    """Rectified-flow sampling with the network's timestep equal to sigma, its time schedule shifted by `shift`
    (AuraFlow, Lumina 2, Z-Image). Higher shifts spend more of the steps at high noise."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "shift": ("FLOAT", {"default": 1.73, "min": 0.0, "max": 100.0, "step": 0.01})}}

    FUNCTION = "patch_aura"

    def patch_aura(self, model, shift):
        return self.patch(model, shift, multiplier=1.0)


class ModelSamplingFlux:
    """FLUX's exponential time shift, its mu set from the image size: base_shift at 256 tokens (256x256 pixels),
    max_shift at 4096 (1024x1024), linear in the token count between and beyond."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "max_shift": ("FLOAT", {"default": 1.15, "min": 0.0, "max": 100.0, "step": 0.01}),
                             "base_shift": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.01}),
                             "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                             "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

    def patch(self, model, max_shift, base_shift, width, height):
        model = model.clone()
        model.model_sampling = FluxModelSampling(flux_shift_for_size(width, height, max_shift, base_shift))
        return (model,)


class ModelSamplingDiscrete:
    """The 1000-step discrete schedule (zero terminal SNR with `zsnr`) with another prediction type; "lcm" keeps
    every 20th step, as latent-consistency models were distilled on."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "sampling": (["eps", "v_prediction", "lcm", "x0", "img_to_img"],),
                             "zsnr": ("BOOLEAN", {"default": False})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

    def patch(self, model, sampling, zsnr):
        model = model.clone()
        if sampling == "lcm":
            schedule = discrete_model_sampling("eps", zsnr=zsnr)
            model.add_object_patch("model_sampling", DistilledModelSampling(schedule.sigmas))
        else:
            model.add_object_patch("model_sampling", discrete_model_sampling(sampling, zsnr=zsnr))
        return (model,)


class ModelSamplingContinuousEDM:
    """A continuous log-spaced schedule between sigma_min and sigma_max with EDM's timesteps (0.25 log sigma)."""

    # sampling -> (prediction, sigma_data)
    CHOICES = {"v_prediction": ("v_prediction", 1.0), "edm": ("edm", 0.5), "eps": ("eps", 1.0)}
    SAMPLINGS = ["v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow"]
    SIGMA_MAX, SIGMA_MIN = 120.0, 0.002
    V_TIMESTEPS = False

    @classmethod
    def INPUT_TYPES(cls):
        sigma = {"min": 0.0, "max": 1000.0, "step": 0.001, "round": False}
        return {"required": {"model": ("MODEL",), "sampling": (cls.SAMPLINGS,),
                             "sigma_max": ("FLOAT", {"default": cls.SIGMA_MAX, **sigma}),
                             "sigma_min": ("FLOAT", {"default": cls.SIGMA_MIN, **sigma})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

    def patch(self, model, sampling, sigma_max, sigma_min):
        if sampling not in self.CHOICES:  # they need latent formats / Cosmos models comfyd does not have yet
            raise ValueError(f"sampling {sampling!r} is not supported yet; choose one of {', '.join(self.CHOICES)}")
        prediction, sigma_data = self.CHOICES[sampling]
        model = model.clone()
        model.add_object_patch("model_sampling", ContinuousModelSampling(
            sigma_min, sigma_max, prediction, sigma_data, v_timesteps=self.V_TIMESTEPS))
        return (model,)


class ModelSamplingContinuousV(ModelSamplingContinuousEDM):
    """A continuous schedule for v-prediction models trained on timesteps 2 / pi * atan(sigma)."""

    CHOICES = {"v_prediction": ("v_prediction", 1.0)}
    SAMPLINGS = ["v_prediction"]
    SIGMA_MAX, SIGMA_MIN = 500.0, 0.03
    V_TIMESTEPS = True


NODE_CLASS_MAPPINGS = {"ModelSamplingAuraFlow": ModelSamplingAuraFlow, "ModelSamplingSD3": ModelSamplingSD3,
                       "ModelSamplingFlux": ModelSamplingFlux, "ModelSamplingDiscrete": ModelSamplingDiscrete,
                       "ModelSamplingContinuousEDM": ModelSamplingContinuousEDM,
                       "ModelSamplingContinuousV": ModelSamplingContinuousV}
