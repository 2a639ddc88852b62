"""Flux conditioning nodes (ComfyUI's comfy_extras/nodes_flux.py): separate CLIP-L / T5 prompts and guidance."""
from __future__ import annotations

from .conditioning import set_values

MODULE = "comfy_extras.nodes_flux"
GUIDANCE = ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})


class FluxConditioningNode:
    """What these nodes share as v3-schema nodes upstream: no display name, one untitled output."""

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = (None,)
    CATEGORY = "advanced/conditioning/flux"
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = MODULE


class CLIPTextEncodeFlux(FluxConditioningNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP", {}),
                             "clip_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "t5xxl": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "guidance": GUIDANCE}}

    FUNCTION = "encode"

    def encode(self, clip, clip_l, t5xxl, guidance):
        tokens = clip.tokenize(clip_l)
        tokens["t5xxl"] = clip.tokenize(t5xxl)["t5xxl"]
        cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        return ([[cond, {"pooled_output": pooled, "guidance": guidance}]],)


class FluxGuidance(FluxConditioningNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING", {}), "guidance": GUIDANCE}}

    FUNCTION = "append"

    def append(self, conditioning, guidance):
        return (set_values(conditioning, guidance=guidance),)


class FluxDisableGuidance(FluxConditioningNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING", {})}}

    FUNCTION = "append"
    DESCRIPTION = "This node completely disables the guidance embed on Flux and Flux like models"

    def append(self, conditioning):
        return (set_values(conditioning, guidance=None),)


NODE_CLASS_MAPPINGS = {"CLIPTextEncodeFlux": CLIPTextEncodeFlux, "FluxGuidance": FluxGuidance,
                       "FluxDisableGuidance": FluxDisableGuidance}
