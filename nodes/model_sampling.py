"""Nodes that change how a MODEL maps sigmas to its inputs and outputs."""
from __future__ import annotations

from engine.sampling.model_sampling import FlowModelSampling, FluxModelSampling, flux_shift_for_size

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


NODE_CLASS_MAPPINGS = {"ModelSamplingAuraFlow": ModelSamplingAuraFlow, "ModelSamplingSD3": ModelSamplingSD3,
                       "ModelSamplingFlux": ModelSamplingFlux}
