"""Image nodes that crop, turn, pad, resize and regroup IMAGE batches ([B, H, W, C] floats in 0..1), as ComfyUI's
comfy_extras/nodes_images.py declares them."""
from __future__ import annotations

import torch

from engine import context
from engine.resize import common_upscale

from . import MAX_RESOLUTION

MODULE = "comfy_extras.nodes_images"


def _size(default: int = 512, low: int = 1) -> tuple:
    return ("INT", {"default": default, "min": low, "max": MAX_RESOLUTION, "step": 1})


class _Node:
    RETURN_TYPES = ("IMAGE",)
    RELATIVE_PYTHON_MODULE = MODULE


class ImageCrop(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "width": _size(), "height": _size(), "x": _size(0, 0),
                             "y": _size(0, 0)}}

    FUNCTION = "crop"
    CATEGORY = "image/transform"

    def crop(self, image, width, height, x, y):
        x, y = min(x, image.shape[2] - 1), min(y, image.shape[1] - 1)  # at least one column / row stays
        return (image[:, y:y + height, x:x + width, :],)


class RepeatImageBatch(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "amount": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    FUNCTION = "repeat"
    CATEGORY = "image/batch"

    def repeat(self, image, amount):
        return (image.repeat((amount, 1, 1, 1)),)


class ImageFromBatch(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095}),
                             "length": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    FUNCTION = "frombatch"
    CATEGORY = "image/batch"

    def frombatch(self, image, batch_index, length):
        start = min(image.shape[0] - 1, batch_index)
        return (image[start:start + min(image.shape[0] - start, length)].clone(),)


class ImageAddNoise(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "The random seed used for creating the noise."}),
            "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01})}}

    FUNCTION = "repeat"
    CATEGORY = "image"

    def repeat(self, image, seed, strength):
        noise = torch.randn(image.size(), generator=torch.Generator().manual_seed(seed)).to(image)
        return (torch.clip(image + strength * noise, min=0.0, max=1.0),)


class ResizeAndPadImage(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "target_width": _size(), "target_height": _size(),
                             "padding_color": (["white", "black"],),
                             "interpolation": (["area", "bicubic", "nearest-exact", "bilinear", "lanczos"],)}}

    FUNCTION = "resize_and_pad"
    CATEGORY = "image/transform"

    def resize_and_pad(self, image, target_width, target_height, padding_color, interpolation):
        batch, height, width, channels = image.shape
        scale = min(target_width / width, target_height / height)
        new_width, new_height = int(width * scale), int(height * scale)
        resized = common_upscale(image.permute(0, 3, 1, 2), new_width, new_height, interpolation, "disabled")
        padded = torch.full((batch, channels, target_height, target_width), 0.0 if padding_color == "black" else 1.0,
                            dtype=image.dtype, device=image.device)
        top, left = (target_height - new_height) // 2, (target_width - new_width) // 2
        padded[:, :, top:top + new_height, left:left + new_width] = resized
        return (padded.permute(0, 2, 3, 1),)


class GetImageSize(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT", "INT", "INT")
    RETURN_NAMES = ("width", "height", "batch_size")
    FUNCTION = "get_size"
    CATEGORY = "image"
    DESCRIPTION = "Returns width and height of the image, and passes it through unchanged."

    def get_size(self, image, unique_id=None):
        batch, height, width = image.shape[:3]
        ctx = context.current()
        if unique_id and ctx is not None:  # shown on the node by the frontend
            ctx.send_text(f"width: {width}, height: {height}\n batch size: {batch}")
        return width, height, batch


class ImageRotate(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "rotation": (["none", "90 degrees", "180 degrees", "270 degrees"],)}}

    FUNCTION = "rotate"
    CATEGORY = "image/transform"

    def rotate(self, image, rotation):
        turns = {"90": 1, "180": 2, "270": 3}.get(rotation.split(" ")[0], 0)
        return (torch.rot90(image, k=turns, dims=[2, 1]),)  # clockwise


class ImageFlip(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "flip_method": (["x-axis: vertically", "y-axis: horizontally"],)}}

    FUNCTION = "flip"
    CATEGORY = "image/transform"

    def flip(self, image, flip_method):
        return (torch.flip(image, dims=[1 if flip_method.startswith("x") else 2]),)


class ImageScaleToMaxDimension(_Node):
    # upstream lists "bilinear" twice
    UPSCALE_METHODS = ["area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "upscale_method": (cls.UPSCALE_METHODS,),
                             "largest_size": _size(512, 0)}}

    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, image, upscale_method, largest_size):
        height, width = image.shape[1:3]
        if height > width:
            width, height = round(width / height * largest_size), largest_size
        elif width > height:
            width, height = largest_size, round(height / width * largest_size)
        else:
            width = height = largest_size
        return (common_upscale(image.movedim(-1, 1), width, height, upscale_method, "disabled").movedim(1, -1),)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (
    ImageCrop, RepeatImageBatch, ImageFromBatch, ImageAddNoise, ResizeAndPadImage, GetImageSize, ImageRotate,
    ImageFlip, ImageScaleToMaxDimension)}
NODE_DISPLAY_NAME_MAPPINGS = {"ImageCrop": "Image Crop", "GetImageSize": "Get Image Size"}
