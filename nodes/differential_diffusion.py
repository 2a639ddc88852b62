"""DifferentialDiffusion (ComfyUI's comfy_extras/nodes_differential_diffusion.py): a MODEL whose noise mask is
thresholded per step (engine.sampling.differential_diffusion), so a gradient mask inpaints by degrees."""
from __future__ import annotations

from engine.sampling.differential_diffusion import mask_function


class DifferentialDiffusion:
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {})},
                "optional": {"strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "apply"
    CATEGORY = "_for_testing"
    DISPLAY_NAME = "Differential Diffusion"
    EXPERIMENTAL = True
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_differential_diffusion"

    def apply(self, model, strength=1.0):
        model = model.clone()
        model.model_options["denoise_mask_function"] = mask_function(strength)
        return (model,)


NODE_CLASS_MAPPINGS = {"DifferentialDiffusion": DifferentialDiffusion}
