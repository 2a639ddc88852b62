"""Post-processing nodes for IMAGE batches: blending, Gaussian blur and sharpening, palette quantisation (ComfyUI's
comfy_extras/nodes_post_processing.py)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.resize import common_upscale

BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]
DITHERS = ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]


class _Node:
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    CATEGORY = "image/postprocessing"
    DISPLAY_NAME = None
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_post_processing"


def _soft_light_curve(x):
    return torch.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, torch.sqrt(x))


def blend(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        return torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (_soft_light_curve(a) - a))
    if mode == "difference":
        return a - b
    raise ValueError(f"unsupported blend mode {mode!r}")


def _alpha_match(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """As ComfyUI's image_alpha_fix: a second image with more channels than the first loses the extra ones; a
    first image with more channels gains an opaque one."""
    if a.shape[-1] < b.shape[-1]:
        b = b[..., :a.shape[-1]]
    elif a.shape[-1] > b.shape[-1]:
        a = torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)
    return a, b


class ImageBlend(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE", {}), "image2": ("IMAGE", {}),
                             "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
                             "blend_mode": ("COMBO", {"multiselect": False, "options": BLEND_MODES})}}

    FUNCTION = "blend_images"

    def blend_images(self, image1, image2, blend_factor, blend_mode):
        image1, image2 = _alpha_match(image1, image2.to(image1.device))
        if image1.shape != image2.shape:  # the second image is fitted to the first
            image2 = common_upscale(image2.permute(0, 3, 1, 2), image1.shape[2], image1.shape[1], "bicubic",
                                    "center").permute(0, 2, 3, 1)
        mixed = image1 * (1 - blend_factor) + blend(image1, image2, blend_mode) * blend_factor
        return (torch.clamp(mixed, 0, 1),)


def gaussian_kernel(size: int, sigma: float, device=None) -> torch.Tensor:
    """A size x size Gaussian over -1..1 in both directions, summing to 1."""
    x, y = torch.meshgrid(torch.linspace(-1, 1, size, device=device), torch.linspace(-1, 1, size, device=device),
                          indexing="ij")
    g = torch.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    return g / g.sum()


def sharpen_kernel(size: int, sigma: float, alpha: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """An unsharp mask in one kernel: minus the Gaussian scaled by alpha * 10, the centre raised so that the kernel
    sums to 1."""
    kernel = (gaussian_kernel(size, sigma, device) * -(alpha * 10)).to(dtype)
    centre = size // 2
    kernel[centre, centre] = kernel[centre, centre] - kernel.sum() + 1.0
    return kernel


def convolve_channels(x: torch.Tensor, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    """Each channel of [B, C, H, W] `x` convolved with `kernel`, the borders reflected by `radius` (ComfyUI then
    zero-pads by half the kernel as well and crops the reflected border off again)."""
    channels = x.shape[1]
    padded = F.pad(x, (radius,) * 4, "reflect")
    out = F.conv2d(padded, kernel.repeat(channels, 1, 1).unsqueeze(1), padding=kernel.shape[0] // 2,
                   groups=channels)
    return out[:, :, radius:-radius, radius:-radius]


def _convolve(image: torch.Tensor, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    """convolve_channels on [B, H, W, C] images."""
    return convolve_channels(image.permute(0, 3, 1, 2), kernel, radius).permute(0, 2, 3, 1)


class ImageBlur(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})}}

    FUNCTION = "blur"

    def blur(self, image, blur_radius, sigma):
        if blur_radius == 0:
            return (image,)
        return (_convolve(image, gaussian_kernel(blur_radius * 2 + 1, sigma, image.device), blur_radius),)


class ImageSharpen(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}),
                             "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01})}}

    FUNCTION = "sharpen"

    def sharpen(self, image, sharpen_radius, sigma, alpha):
        if sharpen_radius == 0:
            return (image,)
        kernel = sharpen_kernel(sharpen_radius * 2 + 1, sigma, alpha, image.device, image.dtype)
        return (torch.clamp(_convolve(image, kernel, sharpen_radius), 0, 1),)


def _bayer_matrix(order: int) -> np.ndarray:
    """The normalised Bayer threshold matrix of size 2^order."""
    if order == 0:
        return np.zeros((1, 1), "float32")
    q = 4 ** order
    m = q * _bayer_matrix(order - 1)
    return np.bmat(((m - 1.5, m + 0.5), (m + 1.5, m - 0.5))) / q


def _bayer_dither(image: Image.Image, palette: Image.Image, size: int) -> Image.Image:
    spread = 2 * 256 / (len(palette.getpalette()) // 3)
    matrix = torch.from_numpy(spread * _bayer_matrix(int(math.log2(size))) + 0.5)
    pixels = torch.from_numpy(np.array(image).astype(np.float32))
    tiled = matrix.tile(math.ceil(pixels.shape[0] / matrix.shape[0]),
                        math.ceil(pixels.shape[1] / matrix.shape[1])).unsqueeze(-1)
    pixels.add_(tiled[:pixels.shape[0], :pixels.shape[1]]).clamp_(0, 255)
    return Image.fromarray(pixels.to(torch.uint8).numpy()).quantize(palette=palette, dither=Image.Dither.NONE)


class ImageQuantize(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "colors": ("INT", {"default": 256, "min": 1, "max": 256, "step": 1}),
                             "dither": ("COMBO", {"multiselect": False, "options": DITHERS})}}

    FUNCTION = "quantize"

    def quantize(self, image, colors, dither):
        out = torch.zeros_like(image)
        for index in range(image.shape[0]):
            picture = Image.fromarray((image[index] * 255).to(torch.uint8).numpy(), mode="RGB")
            palette = picture.quantize(colors=colors)  # the palette from a first, undithered pass
            if dither.startswith("bayer"):
                quantized = _bayer_dither(picture, palette, int(dither.split("-")[-1]))
            else:
                method = Image.Dither.FLOYDSTEINBERG if dither == "floyd-steinberg" else Image.Dither.NONE
                quantized = picture.quantize(palette=palette, dither=method)
            out[index] = torch.tensor(np.array(quantized.convert("RGB"))).float() / 255
        return (out,)


NODE_CLASS_MAPPINGS = {"ImageBlend": ImageBlend, "ImageBlur": ImageBlur, "ImageQuantize": ImageQuantize,
                       "ImageSharpen": ImageSharpen}
