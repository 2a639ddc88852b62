"""Nodes that change how a MODEL maps sigmas to its inputs and outputs."""
from __future__ import annotations

from engine.sampling.model_sampling import FlowModelSampling


class ModelSamplingAuraFlow:
    """Rectified-flow sampling with the network's timestep equal to sigma, its time schedule shifted by `shift`
    (AuraFlow, Lumina 2, Z-Image). Higher shifts spend more of the steps at high noise."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "shift": ("FLOAT", {"default": 1.73, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch_aura"
    CATEGORY = "advanced/model"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

    def patch_aura(self, model, shift):
        model = model.clone()
        model.model_sampling = FlowModelSampling(shift=shift, multiplier=1.0)
        return (model,)


NODE_CLASS_MAPPINGS = {"ModelSamplingAuraFlow": ModelSamplingAuraFlow}
