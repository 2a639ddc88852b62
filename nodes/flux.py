"""Flux conditioning nodes (ComfyUI's comfy_extras/nodes_flux.py): separate CLIP-L / T5 prompts, guidance, and
FLUX Kontext's reference-image size and multi-reference method."""
from __future__ import annotations

from .conditioning import set_values
from .image import scale_image

MODULE = "comfy_extras.nodes_flux"
GUIDANCE = ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})
# (width, height) of the image sizes FLUX Kontext was trained on, ComfyUI's list.
PREFERRED_KONTEXT_RESOLUTIONS = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688),
    (1568, 672),
)


class FluxConditioningNode:
    """What these nodes share as v3-schema nodes upstream: no display name, one untitled output."""

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = (None,)
    API_NODE = False
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


class FluxKontextImageScale:
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "scale"
    CATEGORY = "advanced/conditioning/flux"
    DESCRIPTION = "This node resizes the image to one that is more optimal for flux kontext."
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = MODULE

    def scale(self, image):
        aspect = image.shape[2] / image.shape[1]
        # The nearest aspect ratio; on a tie the smaller width (ComfyUI takes the min of (distance, w, h)).
        _, width, height = min((abs(aspect - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
        return (scale_image(image, width, height, "lanczos", "center"),)


class FluxKontextMultiReferenceLatentMethod(FluxConditioningNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING", {}),
                             "reference_latents_method": ("COMBO", {"multiselect": False,
                                                                    "options": ["offset", "index", "uxo/uno"]})}}

    FUNCTION = "append"
    EXPERIMENTAL = True

    def append(self, conditioning, reference_latents_method):
        if "uxo" in reference_latents_method or "uso" in reference_latents_method:
            reference_latents_method = "uxo"
        return (set_values(conditioning, reference_latents_method=reference_latents_method),)


NODE_CLASS_MAPPINGS = {"CLIPTextEncodeFlux": CLIPTextEncodeFlux, "FluxGuidance": FluxGuidance,
                       "FluxDisableGuidance": FluxDisableGuidance, "FluxKontextImageScale": FluxKontextImageScale,
                       "FluxKontextMultiReferenceLatentMethod": FluxKontextMultiReferenceLatentMethod}
