"""Sampler and schedule nodes beyond KSampler's lists: SamplerLCMUpscale and SamplerEulerCFG++ (ComfyUI's
comfy_extras/nodes_advanced_samplers.py) and GITSScheduler (nodes_gits.py)."""
from __future__ import annotations

from engine.sampling import schedules
from engine.sampling.run import Sampler


class _V3Node:
    OUTPUT_TOOLTIPS = (None,)
    DISPLAY_NAME = None
    API_NODE = False


class _SamplerNode(_V3Node):
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_advanced_samplers"


class SamplerLCMUpscale(_SamplerNode):
    UPSCALE_METHODS = ["bislerp", "nearest-exact", "bilinear", "area", "bicubic"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "scale_ratio": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 20.0, "step": 0.01}),
            "scale_steps": ("INT", {"default": -1, "min": -1, "max": 1000, "step": 1}),
            "upscale_method": ("COMBO", {"multiselect": False, "options": cls.UPSCALE_METHODS})}}

    CATEGORY = "sampling/custom_sampling/samplers"

    def get_sampler(self, scale_ratio, scale_steps, upscale_method):
        return (Sampler("lcm_upscale", {"total_upscale": scale_ratio, "upscale_method": upscale_method,
                                        "upscale_steps": None if scale_steps < 0 else scale_steps}),)


class SamplerEulerCFGpp(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"version": ("COMBO", {"multiselect": False, "options": ["regular", "alternative"]})}}

    DISPLAY_NAME = "SamplerEulerCFG++"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    def get_sampler(self, version):
        return (Sampler("euler_pp" if version == "alternative" else "euler_cfg_pp"),)


class GITSScheduler(_V3Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"coeff": ("FLOAT", {"default": 1.2, "min": 0.8, "max": 1.5, "step": 0.05}),
                             "steps": ("INT", {"default": 10, "min": 2, "max": 1000}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_gits"

    def get_sigmas(self, coeff, steps, denoise):
        return (schedules.gits_sigmas(coeff, steps, denoise),)


NODE_CLASS_MAPPINGS = {"SamplerLCMUpscale": SamplerLCMUpscale, "SamplerEulerCFGpp": SamplerEulerCFGpp,
                       "GITSScheduler": GITSScheduler}
