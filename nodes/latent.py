"""Latent nodes: empty latents, resizing, compositing, blending, batching and latent arithmetic.

LATENT is a dict {"samples": [B, C, H/8, W/8], "batch_index"?: list[int], "noise_mask"?: tensor}. Nodes return a
shallow copy of the dict they were given with new entries; they never modify their inputs.
"""
from __future__ import annotations

import math

import torch

from engine.resize import common_upscale

from .image import MAX_RESOLUTION

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
ROTATIONS = {"none": 0, "90 degrees": 1, "180 degrees": 2, "270 degrees": 3}
# Nodes that ComfyUI defines in comfy_extras/nodes_latent.py (its v3 schema API) report that module.
EXTRAS_LATENT = "comfy_extras.nodes_latent"


def repeat_to_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """`tensor` cycled (or truncated) along dim 0 to exactly `batch` items."""
    if tensor.shape[0] == batch:
        return tensor
    repeats = math.ceil(batch / tensor.shape[0])
    return tensor.repeat((repeats,) + (1,) * (tensor.ndim - 1))[:batch]


def match_latent(samples: torch.Tensor, like: torch.Tensor, repeat_batch: bool = True) -> torch.Tensor:
    """`samples` resized (bilinear, centre crop) to the size of `like`, and cycled to its batch size."""
    if samples.shape[1:] != like.shape[1:]:
        samples = common_upscale(samples, like.shape[-1], like.shape[-2], "bilinear", "center")
    return repeat_to_batch(samples, like.shape[0]) if repeat_batch else samples


def edge_ramp(length: int, feather: int, at_start: bool, at_end: bool, like: torch.Tensor) -> torch.Tensor:
    """Weights along one axis: 1/feather, 2/feather ... 1 over the `feather` positions next to each faded edge."""
    position = torch.arange(length, device=like.device, dtype=like.dtype)
    weights = torch.ones_like(position)
    if at_start:
        weights = weights * ((position + 1) / feather).clamp(max=1)
    if at_end:
        weights = weights * ((length - position) / feather).clamp(max=1)
    return weights


class EmptyLatentImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                              "tooltip": "The width of the latent images in pixels."}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                               "tooltip": "The height of the latent images in pixels."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096,
                                   "tooltip": "The number of latent images in the batch."}),
        }}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The empty latent image batch.",)
    FUNCTION = "generate"
    CATEGORY = "latent"
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."

    def generate(self, width, height, batch_size=1):
        # Four channels: the SD1/SDXL latent space.
        return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


class EmptySD3LatentImage:
    """Empty latents in the 16-channel space of the SD3 / FLUX VAEs (what Z-Image samples in)."""
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "generate"
    CATEGORY = "latent/sd3"
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_sd3"

    def generate(self, width, height, batch_size=1):
        return ({"samples": torch.zeros([batch_size, 16, height // 8, width // 8])},)


class LatentFromBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",),
                             "batch_index": ("INT", {"default": 0, "min": 0, "max": 63}),
                             "length": ("INT", {"default": 1, "min": 1, "max": 64})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "frombatch"
    CATEGORY = "latent/batch"

    def frombatch(self, samples, batch_index, length):
        latent = samples["samples"]
        start = min(latent.shape[0] - 1, batch_index)
        length = min(latent.shape[0] - start, length)
        out = dict(samples, samples=latent[start:start + length].clone())
        mask = samples.get("noise_mask")
        if mask is not None:
            # A single mask applies to every item; a batch of masks is cycled to the latent batch, then sliced.
            picked = mask if mask.shape[0] == 1 else repeat_to_batch(mask, latent.shape[0])[start:start + length]
            out["noise_mask"] = picked.clone()
        indices = samples.get("batch_index")
        out["batch_index"] = list(range(start, start + length)) if indices is None else indices[start:start + length]
        return (out,)


class RepeatLatentBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",),
                             "amount": ("INT", {"default": 1, "min": 1, "max": 64})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "repeat"
    CATEGORY = "latent/batch"

    def repeat(self, samples, amount):
        latent = samples["samples"]
        out = dict(samples, samples=latent.repeat((amount,) + (1,) * (latent.ndim - 1)))
        mask = samples.get("noise_mask")
        if mask is not None and mask.shape[0] > 1:
            out["noise_mask"] = mask.repeat((amount,) + (1,) * (mask.ndim - 1))
        indices = samples.get("batch_index")
        if indices is not None:
            # Each copy's seeds continue after the previous copy's, so repeated items get fresh noise.
            span = max(indices) - min(indices) + 1
            out["batch_index"] = indices + [i + copy * span for copy in range(1, amount) for i in indices]
        return (out,)


class LatentUpscale:
    upscale_methods = UPSCALE_METHODS
    crop_methods = ["disabled", "center"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "upscale_method": (list(cls.upscale_methods),),
                             "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "crop": (list(cls.crop_methods),)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    def upscale(self, samples, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return (dict(samples),)
        latent = samples["samples"]
        latent_h, latent_w = latent.shape[-2], latent.shape[-1]
        # A zero side keeps the aspect ratio; either side is at least 64 pixels.
        if width == 0:
            height = max(64, height)
            width = max(64, round(latent_w * height / latent_h))
        elif height == 0:
            width = max(64, width)
            height = max(64, round(latent_h * width / latent_w))
        else:
            width, height = max(64, width), max(64, height)
        return (dict(samples, samples=common_upscale(latent, width // 8, height // 8, upscale_method, crop)),)


class LatentUpscaleBy:
    upscale_methods = UPSCALE_METHODS

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "upscale_method": (list(cls.upscale_methods),),
                             "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    def upscale(self, samples, upscale_method, scale_by):
        latent = samples["samples"]
        width, height = round(latent.shape[-1] * scale_by), round(latent.shape[-2] * scale_by)
        return (dict(samples, samples=common_upscale(latent, width, height, upscale_method, "disabled")),)


class LatentRotate:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "rotation": (list(ROTATIONS),)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "rotate"
    CATEGORY = "latent/transform"

    def rotate(self, samples, rotation):
        # Turning from the width axis towards the height axis: clockwise as the image is seen.
        return (dict(samples, samples=torch.rot90(samples["samples"], k=ROTATIONS[rotation], dims=(-1, -2))),)


class LatentFlip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",),
                             "flip_method": (["x-axis: vertically", "y-axis: horizontally"],)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "flip"
    CATEGORY = "latent/transform"

    def flip(self, samples, flip_method):
        axis = -2 if flip_method.startswith("x") else -1
        return (dict(samples, samples=torch.flip(samples["samples"], dims=(axis,))),)


class LatentComposite:
    @classmethod
    def INPUT_TYPES(cls):
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"samples_to": ("LATENT",), "samples_from": ("LATENT",),
                             "x": ("INT", dict(position)), "y": ("INT", dict(position)),
                             "feather": ("INT", dict(position))}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"
    CATEGORY = "latent"

    def composite(self, samples_to, samples_from, x, y, composite_method="normal", feather=0):
        # composite_method: ComfyUI's signature has it; "normal" (pasting) is the only method
        x, y, feather = x // 8, y // 8, feather // 8
        target = samples_to["samples"]
        out = target.clone()
        height, width = target.shape[-2], target.shape[-1]
        source = samples_from["samples"][..., :max(0, height - y), :max(0, width - x)]
        rows, cols = source.shape[-2], source.shape[-1]
        region = out[..., y:y + rows, x:x + cols]
        if feather == 0:
            region[...] = source
        else:
            # Fade only the edges that lie inside the target; edges on the target's border stay hard.
            row_weights = edge_ramp(rows, feather, y != 0, y + rows < height, source)
            col_weights = edge_ramp(cols, feather, x != 0, x + cols < width, source)
            mask = row_weights[:, None] * col_weights[None, :]
            region[...] = source * mask + region * (1 - mask)
        return (dict(samples_to, samples=out),)


class LatentBlend:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",),
                             "blend_factor": ("FLOAT", {"default": 0.5, "min": 0, "max": 1, "step": 0.01})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "blend"
    CATEGORY = "_for_testing"

    def blend(self, samples1, samples2, blend_factor, blend_mode="normal"):
        if blend_mode != "normal":
            raise ValueError(f"Unsupported blend mode: {blend_mode}")
        first, second = samples1["samples"], samples2["samples"]
        if first.shape != second.shape:
            second = common_upscale(second, first.shape[-1], first.shape[-2], "bicubic", "center")
        return (dict(samples1, samples=first * blend_factor + second * (1 - blend_factor)),)


class LatentCrop:
    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 64, "max": MAX_RESOLUTION, "step": 8}
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"samples": ("LATENT",),
                             "width": ("INT", {"default": 512, **size}), "height": ("INT", {"default": 512, **size}),
                             "x": ("INT", dict(position)), "y": ("INT", dict(position))}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "crop"
    CATEGORY = "latent/transform"

    def crop(self, samples, width, height, x, y):
        latent = samples["samples"]
        # The crop starts at least 8 latent pixels (64 image pixels) before the far edges.
        x = min(x // 8, latent.shape[-1] - 8)
        y = min(y // 8, latent.shape[-2] - 8)
        return (dict(samples, samples=latent[..., y:y + height // 8, x:x + width // 8]),)


class SetLatentNoiseMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "set_mask"
    CATEGORY = "latent/inpaint"

    def set_mask(self, samples, mask):
        return (dict(samples, noise_mask=mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))),)


# -- comfy_extras/nodes_latent.py: these declare every input with an options dict and combos as "COMBO" -------


class ExtrasLatentNode:
    """What these nodes share: no display name, one untitled output, two latents in unless they say otherwise."""
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples1": ("LATENT", {}), "samples2": ("LATENT", {})}}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "execute"
    CATEGORY = "latent/advanced"
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = EXTRAS_LATENT


class LatentAdd(ExtrasLatentNode):
    def execute(self, samples1, samples2):
        first = samples1["samples"]
        return (dict(samples1, samples=first + match_latent(samples2["samples"], first)),)


class LatentSubtract(ExtrasLatentNode):
    def execute(self, samples1, samples2):
        first = samples1["samples"]
        return (dict(samples1, samples=first - match_latent(samples2["samples"], first)),)


class LatentMultiply(ExtrasLatentNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT", {}),
                             "multiplier": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})}}

    def execute(self, samples, multiplier):
        return (dict(samples, samples=samples["samples"] * multiplier),)


class LatentInterpolate(ExtrasLatentNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples1": ("LATENT", {}), "samples2": ("LATENT", {}),
                             "ratio": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def execute(self, samples1, samples2, ratio):
        first = samples1["samples"]
        second = match_latent(samples2["samples"], first)
        # Directions (unit channel vectors per pixel) and magnitudes are interpolated separately.
        norm1 = torch.linalg.vector_norm(first, dim=1, keepdim=True)
        norm2 = torch.linalg.vector_norm(second, dim=1, keepdim=True)
        mixed = torch.nan_to_num(first / norm1) * ratio + torch.nan_to_num(second / norm2) * (1.0 - ratio)
        direction = torch.nan_to_num(mixed / torch.linalg.vector_norm(mixed, dim=1, keepdim=True))
        return (dict(samples1, samples=direction * (norm1 * ratio + norm2 * (1.0 - ratio))),)


class LatentConcat(ExtrasLatentNode):
    AXES = {"x": -1, "y": -2, "t": -3}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples1": ("LATENT", {}), "samples2": ("LATENT", {}),
                             "dim": ("COMBO", {"multiselect": False, "options": ["x", "-x", "y", "-y", "t", "-t"]})}}

    def execute(self, samples1, samples2, dim):
        first = samples1["samples"]
        second = repeat_to_batch(samples2["samples"], first.shape[0])
        parts = (second, first) if dim.startswith("-") else (first, second)
        return (dict(samples1, samples=torch.cat(parts, dim=self.AXES[dim[-1]])),)


class LatentCut(ExtrasLatentNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "samples": ("LATENT", {}),
            "dim": ("COMBO", {"multiselect": False, "options": ["x", "y", "t"]}),
            "index": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
            "amount": ("INT", {"default": 1, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
        }}

    def execute(self, samples, dim, index, amount):
        latent = samples["samples"]
        axis = latent.ndim - {"x": 1, "y": 2, "t": 3}[dim]
        size = latent.shape[axis]
        # Out-of-range starts are clamped; a negative index counts from the end.
        if index >= 0:
            index = min(index, size - 1)
            amount = min(size - index, amount)
        else:
            index = max(index, -size)
            amount = min(-index, amount)
        return (dict(samples, samples=torch.narrow(latent, axis, index, amount)),)


class LatentBatch(ExtrasLatentNode):
    CATEGORY = "latent/batch"

    def execute(self, samples1, samples2):
        first = samples1["samples"]
        second = match_latent(samples2["samples"], first, repeat_batch=False)
        indices = samples1.get("batch_index", list(range(first.shape[0]))) \
            + samples2.get("batch_index", list(range(second.shape[0])))
        return (dict(samples1, samples=torch.cat((first, second)), batch_index=indices),)


class LatentBatchSeedBehavior(ExtrasLatentNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT", {}),
                             "seed_behavior": ("COMBO", {"default": "fixed", "multiselect": False,
                                                         "options": ["random", "fixed"]})}}

    def execute(self, samples, seed_behavior):
        out = dict(samples)
        if seed_behavior == "random":
            out.pop("batch_index", None)
        else:
            # Every item reuses the first item's seed.
            out["batch_index"] = [samples.get("batch_index", [0])[0]] * samples["samples"].shape[0]
        return (out,)


NODE_CLASS_MAPPINGS = {
    "EmptyLatentImage": EmptyLatentImage, "EmptySD3LatentImage": EmptySD3LatentImage,
    "LatentFromBatch": LatentFromBatch, "RepeatLatentBatch": RepeatLatentBatch,
    "LatentUpscale": LatentUpscale, "LatentUpscaleBy": LatentUpscaleBy, "LatentRotate": LatentRotate,
    "LatentFlip": LatentFlip, "LatentComposite": LatentComposite, "LatentBlend": LatentBlend,
    "LatentCrop": LatentCrop, "SetLatentNoiseMask": SetLatentNoiseMask,
    "LatentAdd": LatentAdd, "LatentSubtract": LatentSubtract, "LatentMultiply": LatentMultiply,
    "LatentInterpolate": LatentInterpolate, "LatentConcat": LatentConcat, "LatentCut": LatentCut,
    "LatentBatch": LatentBatch, "LatentBatchSeedBehavior": LatentBatchSeedBehavior,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyLatentImage": "Empty Latent Image", "LatentFromBatch": "Latent From Batch",
    "RepeatLatentBatch": "Repeat Latent Batch", "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By", "LatentRotate": "Rotate Latent", "LatentFlip": "Flip Latent",
    "LatentComposite": "Latent Composite", "LatentBlend": "Latent Blend", "LatentCrop": "Crop Latent",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
}
