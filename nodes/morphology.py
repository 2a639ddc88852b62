"""Grey-scale morphology on IMAGE batches and the YCbCr split / merge (ComfyUI's comfy_extras/nodes_morphology.py,
which calls kornia; the same results are computed here with torch alone).

The structuring element is a flat kernel_size x kernel_size square anchored at (size // 2, size // 2), as kornia
anchors it; dilation reflects it and erosion does not, so an even size reaches one pixel further right / down when
dilating and left / up when eroding. Pixels outside the image take no part (kornia's "geodesic" border).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# BT.601 full range, as kornia: Y = 0.299 R + 0.587 G + 0.114 B, Cb / Cr the scaled B / R differences around 0.5.
LUMA = (0.299, 0.587, 0.114)
CB_SCALE, CR_SCALE = 0.564, 0.713


def _extreme_filter(images: torch.Tensor, size: int, dilate: bool) -> torch.Tensor:
    """The maximum (dilate) or minimum of each [B, C, H, W] pixel's window; outside pixels never win."""
    before, after = size - size // 2 - 1, size // 2
    pad = (before, after, before, after) if dilate else (after, before, after, before)
    sign = 1.0 if dilate else -1.0
    padded = F.pad(images * sign, pad, mode="constant", value=-float("inf"))
    return F.max_pool2d(padded, size, stride=1) * sign


def dilate(images: torch.Tensor, size: int) -> torch.Tensor:
    return _extreme_filter(images, size, dilate=True)


def erode(images: torch.Tensor, size: int) -> torch.Tensor:
    return _extreme_filter(images, size, dilate=False)


OPERATIONS = {
    "erode": erode,
    "dilate": dilate,
    "open": lambda x, size: dilate(erode(x, size), size),
    "close": lambda x, size: erode(dilate(x, size), size),
    "gradient": lambda x, size: dilate(x, size) - erode(x, size),
    "bottom_hat": lambda x, size: erode(dilate(x, size), size) - x,
    "top_hat": lambda x, size: x - dilate(erode(x, size), size),
}


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """[..., 3] RGB in 0..1 to [..., 3] Y, Cb, Cr (not clamped)."""
    if image.shape[-1] != 3:
        raise ValueError(f"an RGB image has 3 channels, not {image.shape[-1]}")
    r, g, b = image.unbind(-1)
    y = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
    return torch.stack([y, (b - y) * CB_SCALE + 0.5, (r - y) * CR_SCALE + 0.5], dim=-1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """The exact inverse of rgb_to_ycbcr (kornia >= 0.9 uses it; older kornia rounded the coefficients), clamped to
    0..1."""
    y, cb, cr = image.unbind(-1)
    cb, cr = cb - 0.5, cr - 0.5
    r = y + (1 / CR_SCALE) * cr
    g = y - (LUMA[0] / LUMA[1] / CR_SCALE) * cr - (LUMA[2] / LUMA[1] / CB_SCALE) * cb
    b = y + (1 / CB_SCALE) * cb
    return torch.stack([r, g, b], dim=-1).clamp(0.0, 1.0)


class _Node:
    OUTPUT_TOOLTIPS = (None,)
    DISPLAY_NAME = None
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_morphology"


class Morphology(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "operation": ("COMBO", {"multiselect": False, "options": list(OPERATIONS)}),
                             "kernel_size": ("INT", {"default": 3, "min": 3, "max": 999, "step": 1})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "process"
    CATEGORY = "image/postprocessing"
    DISPLAY_NAME = "ImageMorphology"

    def process(self, image, operation, kernel_size):
        if operation not in OPERATIONS:
            raise ValueError(f"Invalid operation {operation} for morphology. Must be one of {', '.join(OPERATIONS)}")
        out = OPERATIONS[operation](image.float().movedim(-1, 1), kernel_size)
        return (out.movedim(1, -1),)


class ImageRGBToYUV(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {})}}

    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE")
    RETURN_NAMES = ("Y", "U", "V")
    OUTPUT_TOOLTIPS = (None, None, None)
    FUNCTION = "convert"
    CATEGORY = "image/batch"

    def convert(self, image):
        # each plane as a grey image: the one channel repeated over the input's channels
        out = rgb_to_ycbcr(image)
        return tuple(out[..., i:i + 1].expand_as(image) for i in range(3))


class ImageYUVToRGB(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"Y": ("IMAGE", {}), "U": ("IMAGE", {}), "V": ("IMAGE", {})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "convert"
    CATEGORY = "image/batch"

    def convert(self, Y, U, V):
        # a plane given as a colour image counts by the mean of its channels
        planes = torch.cat([plane.mean(dim=-1, keepdim=True) for plane in (Y, U, V)], dim=-1)
        return (ycbcr_to_rgb(planes),)


NODE_CLASS_MAPPINGS = {"Morphology": Morphology, "ImageRGBToYUV": ImageRGBToYUV, "ImageYUVToRGB": ImageYUVToRGB}
