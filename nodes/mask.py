"""Mask nodes and image/latent compositing: solid, invert, crop, combine, feather, grow and threshold masks;
image <-> mask conversions; masked pastes; alpha split/join and Porter-Duff compositing.

MASK is a float tensor [B, H, W] (a 2-D mask counts as one item); IMAGE is [B, H, W, C] in 0..1. In a MASK,
1 means "selected"; an image's alpha is the opposite (a mask of 1 is fully transparent).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.resize import common_upscale

from .image import MAX_RESOLUTION, PreviewImage
from .latent import repeat_to_batch

EXTRAS_MASK = "comfy_extras.nodes_mask"
EXTRAS_COMPOSITING = "comfy_extras.nodes_compositing"
CHANNELS = ["red", "green", "blue", "alpha"]


def as_batch(mask: torch.Tensor) -> torch.Tensor:
    """A mask as [B, H, W]."""
    return mask.reshape((-1, mask.shape[-2], mask.shape[-1]))


def mask_to_image(mask: torch.Tensor) -> torch.Tensor:
    """Masks as grey [B, H, W, 3] images (an expanded view: the three channels share memory)."""
    return as_batch(mask)[..., None].expand(-1, -1, -1, 3)


def resize_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H, W] masks resized bilinearly to (height, width)."""
    return F.interpolate(as_batch(mask)[:, None], size=(height, width), mode="bilinear")[:, 0]


def composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None = None,
              multiplier: int = 8, resize_source: bool = False) -> torch.Tensor:
    """A copy of `destination` [B, C, H, W] with `source` [b, C, h, w] laid over it at pixel offset (x, y).

    Offsets are in pixels and `multiplier` pixels make one grid cell (8 for latents); the source batch is cycled to
    B; `mask` (resized to the source) weights the source against what lies beneath it.
    """
    out = destination.clone()
    source = source.to(destination.device)
    if resize_source:
        source = F.interpolate(source, size=destination.shape[-2:], mode="bilinear")
    source = repeat_to_batch(source, destination.shape[0])
    left, top = x // multiplier, y // multiplier
    height, width = destination.shape[-2], destination.shape[-1]
    x0, x1 = max(left, 0), min(left + source.shape[-1], width)
    y0, y1 = max(top, 0), min(top + source.shape[-2], height)
    if x1 <= x0 or y1 <= y0:
        return out
    patch = source[..., y0 - top:y1 - top, x0 - left:x1 - left]
    if mask is None:
        out[..., y0:y1, x0:x1] = patch
        return out
    weight = resize_mask(mask.to(destination.device), source.shape[-2], source.shape[-1])[:, None]
    weight = repeat_to_batch(weight, source.shape[0])[..., y0 - top:y1 - top, x0 - left:x1 - left]
    out[..., y0:y1, x0:x1] = patch * weight + out[..., y0:y1, x0:x1] * (1 - weight)
    return out


def morphology(masks: torch.Tensor, steps: int, grow: bool, tapered_corners: bool) -> torch.Tensor:
    """`steps` rounds of 3x3 grey dilation (`grow`) or erosion of [B, H, W] masks; tapered corners leave the
    diagonal neighbours out. Past the border the edge values repeat (scipy's "reflect" mode for a 3x3 window)."""
    reduce = torch.maximum if grow else torch.minimum
    shifts = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if not tapered_corners:
        shifts += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    height, width = masks.shape[-2], masks.shape[-1]
    for _ in range(steps):
        padded = F.pad(masks[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
        result = masks
        for dy, dx in shifts:
            result = reduce(result, padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width])
        masks = result
    return masks


class LatentCompositeMasked:
    @classmethod
    def INPUT_TYPES(cls):
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"destination": ("LATENT",), "source": ("LATENT",),
                             "x": ("INT", dict(position)), "y": ("INT", dict(position)),
                             "resize_source": ("BOOLEAN", {"default": False})},
                "optional": {"mask": ("MASK",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"
    CATEGORY = "latent"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def composite(self, destination, source, x, y, resize_source, mask=None):
        samples = composite(destination["samples"], source["samples"], x, y, mask, 8, resize_source)
        return (dict(destination, samples=samples),)


class ImageCompositeMasked:
    @classmethod
    def INPUT_TYPES(cls):
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"destination": ("IMAGE",), "source": ("IMAGE",),
                             "x": ("INT", dict(position)), "y": ("INT", dict(position)),
                             "resize_source": ("BOOLEAN", {"default": False})},
                "optional": {"mask": ("MASK",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"
    CATEGORY = "image"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def composite(self, destination, source, x, y, resize_source, mask=None):
        channels = destination.shape[-1]
        # Match the source's channels to the destination's: extra ones are dropped, a missing alpha is opaque.
        source = F.pad(source[..., :channels], (0, channels - min(source.shape[-1], channels)), value=1.0)
        out = composite(destination.movedim(-1, 1), source.movedim(-1, 1), x, y, mask, 1, resize_source)
        return (out.movedim(1, -1),)


class MaskToImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def mask_to_image(self, mask):
        return (mask_to_image(mask),)


class ImageToMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "channel": (list(CHANNELS),)}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def image_to_mask(self, image, channel):
        return (image[..., CHANNELS.index(channel)],)


class ImageColorToMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1,
                                               "display": "color"})}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def image_to_mask(self, image, color):
        # Compare as 8-bit 0xRRGGBB values, the form the colour widget gives.
        rgb = (image[..., :3].clamp(0, 1) * 255.0).round().to(torch.int64)
        packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
        return ((packed == color).float(),)


class SolidMask:
    @classmethod
    def INPUT_TYPES(cls):
        side = {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                             "width": ("INT", dict(side)), "height": ("INT", dict(side))}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def solid(self, value, width, height):
        return (torch.full((1, height, width), value, dtype=torch.float32),)


class InvertMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def invert(self, mask):
        return (1.0 - mask,)


class CropMask:
    @classmethod
    def INPUT_TYPES(cls):
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        side = {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"mask": ("MASK",), "x": ("INT", dict(position)), "y": ("INT", dict(position)),
                             "width": ("INT", dict(side)), "height": ("INT", dict(side))}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "crop"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def crop(self, mask, x, y, width, height):
        return (as_batch(mask)[:, y:y + height, x:x + width],)


class MaskComposite:
    OPERATIONS = {
        "multiply": lambda a, b: a * b,
        "add": lambda a, b: a + b,
        "subtract": lambda a, b: a - b,
        # The logical operations treat values of 0.5 and more as set.
        "and": lambda a, b: (a.round().bool() & b.round().bool()).float(),
        "or": lambda a, b: (a.round().bool() | b.round().bool()).float(),
        "xor": lambda a, b: (a.round().bool() ^ b.round().bool()).float(),
    }

    @classmethod
    def INPUT_TYPES(cls):
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"destination": ("MASK",), "source": ("MASK",),
                             "x": ("INT", dict(position)), "y": ("INT", dict(position)),
                             "operation": (list(cls.OPERATIONS),)}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "combine"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def combine(self, destination, source, x, y, operation):
        out = as_batch(destination).clone()
        source = as_batch(source)
        bottom, right = min(y + source.shape[-2], out.shape[-2]), min(x + source.shape[-1], out.shape[-1])
        if bottom > y and right > x:
            region = out[:, y:bottom, x:right]
            out[:, y:bottom, x:right] = self.OPERATIONS[operation](region, source[:, :bottom - y, :right - x])
        return (out.clamp(0.0, 1.0),)


class FeatherMask:
    @classmethod
    def INPUT_TYPES(cls):
        side = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"mask": ("MASK",), "left": ("INT", dict(side)), "top": ("INT", dict(side)),
                             "right": ("INT", dict(side)), "bottom": ("INT", dict(side))}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "feather"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def feather(self, mask, left, top, right, bottom):
        out = as_batch(mask).clone()
        height, width = out.shape[-2], out.shape[-1]
        left, right, top, bottom = min(left, width), min(right, width), min(top, height), min(bottom, height)
        # Line i from an edge is scaled by (i + 1) / n. ComfyUI counts the right and bottom ramps from index -i,
        # so they start on the first column/row (index -0) and end one short of the far edge; kept for parity.
        for i in range(left):
            out[:, :, i] *= (i + 1) / left
        for i in range(right):
            out[:, :, -i] *= (i + 1) / right
        for i in range(top):
            out[:, i, :] *= (i + 1) / top
        for i in range(bottom):
            out[:, -i, :] *= (i + 1) / bottom
        return (out,)


class GrowMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",),
                             "expand": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION,
                                                "step": 1}),
                             "tapered_corners": ("BOOLEAN", {"default": True})}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "expand_mask"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def expand_mask(self, mask, expand, tapered_corners):
        return (morphology(as_batch(mask), abs(expand), expand > 0, tapered_corners),)


class ThresholdMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",),
                             "value": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"
    CATEGORY = "mask"
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def image_to_mask(self, mask, value):
        return ((mask > value).float(),)


class MaskPreview(PreviewImage):
    """Saves masks as grey temp images for the UI to show."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    FUNCTION = "execute"
    CATEGORY = "mask"
    COMPRESS_LEVEL = 4
    RELATIVE_PYTHON_MODULE = EXTRAS_MASK

    def execute(self, mask, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        return self.save_images(mask_to_image(mask), filename_prefix, prompt, extra_pnginfo)


# -- comfy_extras/nodes_compositing.py (ComfyUI's v3 schema: options dicts on every input, untitled outputs) ----


def porter_duff(mode: str, src: torch.Tensor, src_alpha: torch.Tensor, dst: torch.Tensor, dst_alpha: torch.Tensor):
    """(image, alpha) of Porter-Duff `mode` on premultiplied colours, with ComfyUI's formulas (its DARKEN,
    LIGHTEN and OVERLAY skip the usual alpha weighting of the blended term)."""
    s, sa, d, da = src, src_alpha, dst, dst_alpha
    union = sa + da - sa * da
    table = {
        "ADD": lambda: ((s + d).clamp(0, 1), (sa + da).clamp(0, 1)),
        "CLEAR": lambda: (torch.zeros_like(d), torch.zeros_like(da)),
        "DARKEN": lambda: ((1 - da) * s + (1 - sa) * d + torch.minimum(s, d), union),
        "DST": lambda: (d, da),
        "DST_ATOP": lambda: (sa * d + (1 - da) * s, sa),
        "DST_IN": lambda: (d * sa, sa * da),
        "DST_OUT": lambda: ((1 - sa) * d, (1 - sa) * da),
        "DST_OVER": lambda: (d + (1 - da) * s, da + (1 - da) * sa),
        "LIGHTEN": lambda: ((1 - da) * s + (1 - sa) * d + torch.maximum(s, d), union),
        "MULTIPLY": lambda: (s * d, sa * da),
        "OVERLAY": lambda: (torch.where(2 * d < da, 2 * s * d, sa * da - 2 * (da - s) * (sa - d)), union),
        "SCREEN": lambda: (s + d - s * d, union),
        "SRC": lambda: (s, sa),
        "SRC_ATOP": lambda: (da * s + (1 - sa) * d, da),
        "SRC_IN": lambda: (s * da, sa * da),
        "SRC_OUT": lambda: ((1 - da) * s, (1 - da) * sa),
        "SRC_OVER": lambda: (s + (1 - sa) * d, sa + (1 - sa) * da),
        "XOR": lambda: ((1 - da) * s + (1 - sa) * d, (1 - da) * sa + (1 - sa) * da),
    }
    return table[mode]()


PORTER_DUFF_MODES = ["ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
                     "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR"]


def fit_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H, W, C] images resized (bicubic, centre crop) to (height, width) when they differ."""
    if image.shape[1:3] == (height, width):
        return image
    return common_upscale(image.movedim(-1, 1), width, height, "bicubic", "center").movedim(1, -1)


class CompositingNode:
    """What the compositing nodes share."""
    API_NODE = False

    FUNCTION = "execute"
    CATEGORY = "mask/compositing"
    RELATIVE_PYTHON_MODULE = EXTRAS_COMPOSITING


class PorterDuffImageComposite(CompositingNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("IMAGE", {}), "source_alpha": ("MASK", {}),
                             "destination": ("IMAGE", {}), "destination_alpha": ("MASK", {}),
                             "mode": ("COMBO", {"default": "DST", "multiselect": False,
                                                "options": list(PORTER_DUFF_MODES)})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = (None, None)

    def execute(self, source, source_alpha, destination, destination_alpha, mode):
        source_alpha, destination_alpha = as_batch(source_alpha), as_batch(destination_alpha)
        count = min(len(source), len(source_alpha), len(destination), len(destination_alpha))
        if source.shape[-1] != destination.shape[-1]:
            raise ValueError("PorterDuffImageComposite: source and destination need the same number of channels")
        dst = destination[:count]
        height, width = dst.shape[1], dst.shape[2]
        src = fit_image(source[:count], height, width)
        # Masks become alphas, sized like the destination image.
        dst_a = 1 - fit_image(destination_alpha[:count, ..., None], height, width)
        src_a = 1 - fit_image(source_alpha[:count, ..., None], height, width)
        image, alpha = porter_duff(mode, src * src_a, src_a, dst * dst_a, dst_a)
        image = torch.where(alpha > 1e-5, image / alpha, torch.zeros_like(image)).clamp(0, 1)
        return image, 1 - alpha[..., 0]


class SplitImageWithAlpha(CompositingNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = (None, None)

    def execute(self, image):
        # Without an alpha channel the image is opaque: an all-zero mask.
        alpha = image[..., 3] if image.shape[-1] > 3 else torch.ones_like(image[..., 0])
        return image[..., :3].clone(), 1.0 - alpha


class JoinImageWithAlpha(CompositingNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}), "alpha": ("MASK", {})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)

    def execute(self, image, alpha):
        alpha = resize_mask(alpha.to(image.device), image.shape[1], image.shape[2])
        count = min(len(image), len(alpha))
        opacity = (1.0 - alpha[:count, ..., None]).to(image.dtype)
        return (torch.cat((image[:count, ..., :3], opacity), dim=-1),)


NODE_CLASS_MAPPINGS = {
    "LatentCompositeMasked": LatentCompositeMasked, "ImageCompositeMasked": ImageCompositeMasked,
    "MaskToImage": MaskToImage, "ImageToMask": ImageToMask, "ImageColorToMask": ImageColorToMask,
    "SolidMask": SolidMask, "InvertMask": InvertMask, "CropMask": CropMask, "MaskComposite": MaskComposite,
    "FeatherMask": FeatherMask, "GrowMask": GrowMask, "ThresholdMask": ThresholdMask, "MaskPreview": MaskPreview,
    "PorterDuffImageComposite": PorterDuffImageComposite, "SplitImageWithAlpha": SplitImageWithAlpha,
    "JoinImageWithAlpha": JoinImageWithAlpha,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageToMask": "Convert Image to Mask", "MaskToImage": "Convert Mask to Image",
    "PorterDuffImageComposite": "Porter-Duff Image Composite", "SplitImageWithAlpha": "Split Image with Alpha",
    "JoinImageWithAlpha": "Join Image with Alpha",
}
