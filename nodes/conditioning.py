"""Conditioning nodes: combining, averaging and concatenating conditionings, setting area, mask, strength
and timestep-range options, and the image inputs of inpainting / instruct-pix2pix models.

CONDITIONING is a list of [cond [B, tokens, dim], options] pairs. Options keys are ComfyUI's: `pooled_output`,
`area` ((h, w, y, x) in latent pixels, or ("percentage", h, w, y, x)), `strength`, `set_area_to_bounds`, `mask`,
`mask_strength`, `start_percent`, `end_percent`, `concat_latent_image` (a VAE latent as VAEEncode gives it) and
`concat_mask` ([B, 1, H, W] in pixels). Nodes build new lists with copied option dicts.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from .image import MAX_RESOLUTION
from .vae import crop_to_multiple, grey_out_masked

log = logging.getLogger("comfyd.nodes")

STRENGTH = {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}


def set_values(conditioning: list, **values) -> list:
    """Each pair with a copy of its options updated with `values` (the cond tensors are shared, not copied)."""
    return [[cond, {**options, **values}] for cond, options in conditioning]


def first_cond(conditioning_from: list, node: str):
    """The one entry of `conditioning_from` these nodes use; ComfyUI ignores the rest, with a warning."""
    if len(conditioning_from) > 1:
        log.warning("%s: conditioning_from holds %d conds; only the first is applied to conditioning_to.",
                    node, len(conditioning_from))
    return conditioning_from[0]


class ConditioningCombine:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_1": ("CONDITIONING",), "conditioning_2": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "combine"
    CATEGORY = "conditioning"

    def combine(self, conditioning_1, conditioning_2):
        return (conditioning_1 + conditioning_2,)


class ConditioningAverage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",),
                             "conditioning_to_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0,
                                                                    "step": 0.01})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "addWeighted"
    CATEGORY = "conditioning"

    def addWeighted(self, conditioning_to, conditioning_from, conditioning_to_strength):
        weight = conditioning_to_strength
        cond_from, options_from = first_cond(conditioning_from, "ConditioningAverage")
        pooled_from = options_from.get("pooled_output")
        out = []
        for cond, options in conditioning_to:
            tokens = cond.shape[1]
            # The other cond is cut or zero-padded to this cond's token count.
            other = cond_from[:, :tokens]
            other = F.pad(other, (0, 0, 0, tokens - other.shape[1]))
            merged = dict(options)
            pooled_to = options.get("pooled_output", pooled_from)
            if pooled_from is not None and pooled_to is not None:
                merged["pooled_output"] = pooled_to * weight + pooled_from * (1.0 - weight)
            elif pooled_from is not None:
                merged["pooled_output"] = pooled_from
            out.append([cond * weight + other * (1.0 - weight), merged])
        return (out,)


class ConditioningConcat:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "concat"
    CATEGORY = "conditioning"

    def concat(self, conditioning_to, conditioning_from):
        cond_from = first_cond(conditioning_from, "ConditioningConcat")[0]
        return ([[torch.cat((cond, cond_from), dim=1), dict(options)] for cond, options in conditioning_to],)


class ConditioningSetArea:
    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"conditioning": ("CONDITIONING",),
                             "width": ("INT", dict(size)), "height": ("INT", dict(size)),
                             "x": ("INT", dict(position)), "y": ("INT", dict(position)),
                             "strength": ("FLOAT", dict(STRENGTH))}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, width, height, x, y, strength):
        # Pixels to latent pixels, in ComfyUI's (height, width, y, x) order.
        area = (height // 8, width // 8, y // 8, x // 8)
        return (set_values(conditioning, area=area, strength=strength, set_area_to_bounds=False),)


class ConditioningSetAreaPercentage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "width": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01}),
                             "height": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01}),
                             "x": ("FLOAT", {"default": 0, "min": 0, "max": 1.0, "step": 0.01}),
                             "y": ("FLOAT", {"default": 0, "min": 0, "max": 1.0, "step": 0.01}),
                             "strength": ("FLOAT", dict(STRENGTH))}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, width, height, x, y, strength):
        area = ("percentage", height, width, y, x)
        return (set_values(conditioning, area=area, strength=strength, set_area_to_bounds=False),)


class ConditioningSetAreaStrength:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "strength": ("FLOAT", dict(STRENGTH))}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, strength):
        return (set_values(conditioning, strength=strength),)


class ConditioningSetMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "mask": ("MASK",),
                             "strength": ("FLOAT", dict(STRENGTH)),
                             "set_cond_area": (["default", "mask bounds"],)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning"

    def append(self, conditioning, mask, set_cond_area, strength):
        if mask.ndim < 3:
            mask = mask.unsqueeze(0)
        return (set_values(conditioning, mask=mask, set_area_to_bounds=set_cond_area != "default",
                           mask_strength=strength),)


class ConditioningZeroOut:
    ZEROED_OPTIONS = ("pooled_output", "conditioning_lyrics")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "zero_out"
    CATEGORY = "advanced/conditioning"

    def zero_out(self, conditioning):
        out = []
        for cond, options in conditioning:
            zeroed = dict(options)
            for key in self.ZEROED_OPTIONS:
                if options.get(key) is not None:
                    zeroed[key] = torch.zeros_like(options[key])
            out.append([torch.zeros_like(cond), zeroed])
        return (out,)


class ConditioningSetTimestepRange:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_range"
    CATEGORY = "advanced/conditioning"

    def set_range(self, conditioning, start, end):
        return (set_values(conditioning, start_percent=start, end_percent=end),)


class InpaintModelConditioning:
    """The masked image (greyed where the mask is) and the mask as conditioning, for inpainting models' extra
    input channels; the latent is the whole image, with the mask as its noise mask when `noise_mask`."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "vae": ("VAE",), "pixels": ("IMAGE",),
            "mask": ("MASK",),
            "noise_mask": ("BOOLEAN", {"default": True, "tooltip": "Add a noise mask to the latent so sampling will "
                                       "only happen within the mask. Might improve results or completely break "
                                       "things depending on the model."})}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"
    CATEGORY = "conditioning/inpaint"

    def encode(self, positive, negative, pixels, vae, mask, noise_mask=True):
        masked, mask = grey_out_masked(pixels, mask, 8)  # ComfyUI crops to 8 px here, whatever the VAE
        values = {"concat_latent_image": vae.encode(crop_to_multiple(masked, vae.downscale)), "concat_mask": mask}
        latent = {"samples": vae.encode(crop_to_multiple(pixels, vae.downscale))}
        if noise_mask:
            latent["noise_mask"] = mask
        return set_values(positive, **values), set_values(negative, **values), latent


class InstructPixToPixConditioning:
    """The image to edit as conditioning, for instruct-pix2pix models' extra input channels; sampling starts
    from an empty latent of its size."""
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING", {}), "negative": ("CONDITIONING", {}), "vae": ("VAE", {}),
                             "pixels": ("IMAGE", {})}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    OUTPUT_TOOLTIPS = (None, None, None)
    FUNCTION = "encode"
    CATEGORY = "conditioning/instructpix2pix"
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_ip2p"

    def encode(self, positive, negative, pixels, vae):
        image = vae.encode(crop_to_multiple(crop_to_multiple(pixels, 8), vae.downscale))
        return (set_values(positive, concat_latent_image=image), set_values(negative, concat_latent_image=image),
                {"samples": torch.zeros_like(image)})


NODE_CLASS_MAPPINGS = {
    "ConditioningCombine": ConditioningCombine, "ConditioningAverage": ConditioningAverage,
    "ConditioningConcat": ConditioningConcat, "ConditioningSetArea": ConditioningSetArea,
    "ConditioningSetAreaPercentage": ConditioningSetAreaPercentage,
    "ConditioningSetAreaStrength": ConditioningSetAreaStrength, "ConditioningSetMask": ConditioningSetMask,
    "ConditioningZeroOut": ConditioningZeroOut, "ConditioningSetTimestepRange": ConditioningSetTimestepRange,
    "InpaintModelConditioning": InpaintModelConditioning,
    "InstructPixToPixConditioning": InstructPixToPixConditioning,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ConditioningCombine": "Conditioning (Combine)", "ConditioningConcat": "Conditioning (Concat)",
    "ConditioningSetArea": "Conditioning (Set Area)",
    "ConditioningSetAreaPercentage": "Conditioning (Set Area with Percentage)",
    "ConditioningSetMask": "Conditioning (Set Mask)",
}
