"""Image nodes: load, save, preview, websocket output, and simple pixel operations.

IMAGE is a float tensor [batch, height, width, channels] in 0..1; MASK is [batch, height, width].
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import time

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from engine import context, folders

from engine.resize import common_upscale

from . import MAX_RESOLUTION

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


def to_pil(image: torch.Tensor) -> Image.Image:
    """One [H, W, C] image tensor as an 8-bit PIL image (ComfyUI's rounding: clip, then truncate)."""
    array = np.clip(255.0 * image.cpu().float().numpy(), 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def _open_image(path) -> Image.Image:
    try:
        return Image.open(path)
    except OSError:
        # Some files carry metadata Pillow refuses by default; retry leniently, as ComfyUI does.
        from PIL import ImageFile

        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            image = Image.open(path)
            image.load()
            return image
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _resolve(name: str):
    path = folders.get_annotated_path(name)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"Invalid image file: {name}")
    return path


def _file_digest(name: str) -> str:
    path = folders.get_annotated_path(name)
    if path is None or not path.is_file():
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _validate_image_name(image) -> bool | str:
    path = folders.get_annotated_path(image) if isinstance(image, str) else None
    if path is None or not path.is_file():
        return f"Invalid image file: {image}"
    return True


class LoadImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (folders.active().input_files(), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        source = _open_image(_resolve(image))
        images, masks = [], []
        size = None
        for frame in ImageSequence.Iterator(source):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0)[None])
            if "A" in frame.getbands():
                alpha = np.array(frame.getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.array(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            else:
                mask = torch.zeros((64, 64), dtype=torch.float32)
            masks.append(mask[None])
        if len(images) > 1 and source.format != "MPO":
            return torch.cat(images), torch.cat(masks)
        return images[0], masks[0]

    @classmethod
    def IS_CHANGED(cls, image):
        return _file_digest(image)

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        return _validate_image_name(image)


class LoadImageOutput(LoadImage):
    """LoadImage over the output folder: the frontend lists it through /internal/files/output and names the
    files annotated ("name.png [output]")."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("COMBO", {"image_upload": True, "image_folder": "output", "remote": {
            "route": "/internal/files/output", "refresh_button": True, "control_after_refresh": "first"}})}}

    DESCRIPTION = ("Load an image from the output folder. When the refresh button is clicked, the node will update "
                   "the image list and automatically select the first image, allowing for easy iteration.")
    EXPERIMENTAL = True


class LoadImageMask:
    _color_channels = ["alpha", "red", "green", "blue"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (folders.active().input_files(), {"image_upload": True}),
                             "channel": (cls._color_channels,)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "load_image"

    def load_image(self, image, channel):
        picture = ImageOps.exif_transpose(_open_image(_resolve(image)))
        if picture.getbands() != ("R", "G", "B", "A"):
            if picture.mode == "I":
                picture = picture.point(lambda v: v * (1 / 255))
            picture = picture.convert("RGBA")
        band = channel[0].upper()
        mask = torch.from_numpy(np.array(picture.getchannel(band)).astype(np.float32) / 255.0)
        if band == "A":
            mask = 1.0 - mask
        return (mask[None],)

    @classmethod
    def IS_CHANGED(cls, image, channel):
        return _file_digest(image)

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        return _validate_image_name(image)


def next_counter(directory, filename: str) -> int:
    """ComfyUI's numbering: one more than the highest `<filename>_<NNNNN>_...` already in `directory`."""
    pattern = re.compile(re.escape(filename) + r"_(\d+)_", re.IGNORECASE if os.name == "nt" else 0)
    highest = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            match = pattern.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def expand_prefix(prefix: str, width: int, height: int) -> str:
    """The %width% / %height% / %year% ... substitutions ComfyUI applies to filename prefixes."""
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {"width": width, "height": height, "year": now.tm_year, "month": f"{now.tm_mon:02}",
              "day": f"{now.tm_mday:02}", "hour": f"{now.tm_hour:02}", "minute": f"{now.tm_min:02}",
              "second": f"{now.tm_sec:02}"}
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    return prefix


def save_target(folder: str, filename_prefix: str, width: int = 0, height: int = 0, root=None) -> tuple:
    """(directory, file name stem, next counter, subfolder) for files saved under `filename_prefix` in `folder`
    ("output" / "temp"; or in `root`), as ComfyUI's get_save_image_path; a prefix that leaves it is an error."""
    normalized = os.path.normpath(expand_prefix(filename_prefix, width, height))
    subfolder, filename = os.path.dirname(normalized), os.path.basename(normalized)
    directory = folders.safe_join(root or folders.get_directory(folder), subfolder or ".")
    if directory is None or not filename:
        raise ValueError(f"Saving outside the {folder} folder is not allowed: {filename_prefix!r}")
    directory.mkdir(parents=True, exist_ok=True)
    return directory, filename, next_counter(directory, filename), subfolder


def prompt_metadata(prompt=None, extra_pnginfo=None) -> dict[str, str]:
    """What ComfyUI writes into the metadata of the safetensors files it saves (latents, models): the prompt ("" when
    there is none) and each extra_pnginfo entry, as JSON."""
    return {"prompt": json.dumps(prompt) if prompt is not None else "",
            **{key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()}}


def save_png_batch(images, folder: str, filename_prefix: str, prompt=None, extra_pnginfo=None,
                   compress_level: int = 4, root=None) -> list[dict]:
    """Each image of the batch as a PNG in `folder` ("output" / "temp"; or in `root`, typed `folder`), the prompt
    and extra_pnginfo in its metadata; returns the UI entries ({"filename", "subfolder", "type"}) naming the files."""
    directory, filename, counter, subfolder = save_target(folder, filename_prefix, images[0].shape[1],
                                                          images[0].shape[0], root)
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        metadata.add_text(key, json.dumps(value))
    results = []
    for batch_number, image in enumerate(images):
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        to_pil(image).save(directory / name, pnginfo=metadata, compress_level=compress_level)
        results.append({"filename": name, "subfolder": subfolder, "type": folder})
        counter += 1
    return results


class SaveImage:
    FOLDER = "output"
    COMPRESS_LEVEL = 4

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def __init__(self):
        # ComfyUI's instance attributes, which subclasses written for it set to save elsewhere (e.g. temp previews)
        self.output_dir = str(folders.get_directory(self.FOLDER))
        self.type = self.FOLDER
        self.prefix_append = self.prefix_suffix()
        self.compress_level = self.COMPRESS_LEVEL

    def prefix_suffix(self) -> str:
        return ""

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        return {"ui": {"images": save_png_batch(images, self.type, filename_prefix + self.prefix_append, prompt,
                                                extra_pnginfo, self.compress_level, self.output_dir)}}


class PreviewImage(SaveImage):
    FOLDER = "temp"
    COMPRESS_LEVEL = 1

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def prefix_suffix(self) -> str:
        return "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))


class SaveImageWebsocket:
    """Sends each image to the queuing client as a binary PNG frame instead of writing a file."""

    RELATIVE_PYTHON_MODULE = "custom_nodes.websocket_image_save"  # ComfyUI ships it as an example custom node

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "api/image"

    def save_images(self, images):
        ctx = context.current()
        bar = context.ProgressBar(images.shape[0])
        for step, image in enumerate(images):
            bar.update_absolute(step, images.shape[0])
            if ctx is not None:
                ctx.send_image("PNG", to_pil(image))
        return {}

    @classmethod
    def IS_CHANGED(cls, images):
        return time.time()


class ImageInvert:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"
    CATEGORY = "image"

    def invert(self, image):
        return (1.0 - image,)


class EmptyImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "image"

    def generate(self, width, height, batch_size=1, color=0):
        rgb = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=torch.float32) / 255.0
        return (rgb.expand(batch_size, height, width, 3).clone(),)


class ImageBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"
    CATEGORY = "image"

    def batch(self, image1, image2):
        if image1.shape[1:] != image2.shape[1:]:
            image2 = scale_image(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
        return (torch.cat((image1, image2), dim=0),)


def scale_image(image: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    """Resize [B, H, W, C] images (a 0 side keeps the aspect ratio), optionally centre-cropping to the aspect."""
    samples = image.movedim(-1, 1)
    if width == 0 and height == 0:
        return image
    if width == 0:
        width = max(1, round(samples.shape[3] * height / samples.shape[2]))
    elif height == 0:
        height = max(1, round(samples.shape[2] * width / samples.shape[3]))
    return common_upscale(samples, width, height, method, crop).movedim(1, -1)


class ImageScale:
    upscale_methods = UPSCALE_METHODS
    crop_methods = ["disabled", "center"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "upscale_method": (cls.upscale_methods,),
            "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "crop": (cls.crop_methods,),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, image, upscale_method, width, height, crop):
        return (scale_image(image, width, height, upscale_method, crop),)


class ImageScaleBy:
    upscale_methods = UPSCALE_METHODS

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "upscale_method": (cls.upscale_methods,),
                             "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(self, image, upscale_method, scale_by):
        width, height = round(image.shape[2] * scale_by), round(image.shape[1] * scale_by)
        return (scale_image(image, width, height, upscale_method),)


class ImageScaleToTotalPixels:
    """comfy_extras/nodes_post_processing.py: resize to about ``megapixels`` (MiB of pixels), keeping the aspect."""
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "upscale_method": ("COMBO", {"multiselect": False, "options": list(UPSCALE_METHODS)}),
                             "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_post_processing"

    def upscale(self, image, upscale_method, megapixels):
        height, width = image.shape[1:3]
        scale = math.sqrt(int(megapixels * 1024 * 1024) / (width * height))
        return (scale_image(image, round(width * scale), round(height * scale), upscale_method),)


class ImagePadForOutpaint:
    @classmethod
    def INPUT_TYPES(cls):
        side = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"image": ("IMAGE",), "left": ("INT", side), "top": ("INT", side),
                             "right": ("INT", side), "bottom": ("INT", side),
                             "feathering": ("INT", {"default": 40, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "expand_image"
    CATEGORY = "image"

    def expand_image(self, image, left, top, right, bottom, feathering):
        batch, height, width, channels = image.shape
        padded = torch.full((batch, height + top + bottom, width + left + right, channels), 0.5,
                            dtype=torch.float32)
        padded[:, top:top + height, left:left + width, :] = image
        mask = torch.ones((height + top + bottom, width + left + right), dtype=torch.float32)
        inner = torch.zeros((height, width), dtype=torch.float32)
        if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
            ys = torch.arange(height, dtype=torch.float32)[:, None]
            xs = torch.arange(width, dtype=torch.float32)[None, :]
            # Distance to each padded edge only: sides with no padding stay sharp.
            distances = [d for d, pad in ((ys, top), (height - ys, bottom), (xs, left), (width - xs, right))
                         if pad != 0]
            if distances:
                nearest = torch.stack([d.expand(height, width) for d in distances]).amin(0)
                falloff = (feathering - nearest) / feathering
                inner = torch.where(nearest < feathering, falloff * falloff, inner)
        mask[top:top + height, left:left + width] = inner
        return padded, mask[None]


def _pad_side(image: torch.Tensor, dim: int, size: int, value: float) -> torch.Tensor:
    """[B, H, W, C] images padded evenly (the odd pixel after) along ``dim`` (1: height, 2: width) to ``size``."""
    missing = size - image.shape[dim]
    if missing <= 0:
        return image
    before = missing // 2
    pad = (0, 0, before, missing - before) if dim == 2 else (0, 0, 0, 0, before, missing - before)
    return torch.nn.functional.pad(image, pad, value=value)


def _to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Extra channels (alpha) filled with 1."""
    if image.shape[-1] >= channels:
        return image
    return torch.cat((image, image.new_ones(*image.shape[:-1], channels - image.shape[-1])), dim=-1)


class ImageStitch:
    """comfy_extras/nodes_images.py: image2 put beside image1, optionally resized to it, with a spacer between."""

    SPACING_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0),
                      "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",),
                             "direction": (["right", "down", "left", "up"], {"default": "right"}),
                             "match_image_size": ("BOOLEAN", {"default": True}),
                             "spacing_width": ("INT", {"default": 0, "min": 0, "max": 1024, "step": 2}),
                             "spacing_color": (list(cls.SPACING_COLORS), {"default": "white"})},
                "optional": {"image2": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "stitch"
    CATEGORY = "image/transform"
    DESCRIPTION = """
Stitches image2 to image1 in the specified direction.
If image2 is not provided, returns image1 unchanged.
Optional spacing can be added between images.
"""
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_images"

    def stitch(self, image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
        if image2 is None:
            return (image1,)
        batch = max(image1.shape[0], image2.shape[0])  # the shorter batch repeats its last image
        image1, image2 = (torch.cat((i, i[-1:].repeat(batch - i.shape[0], 1, 1, 1))) for i in (image1, image2))
        horizontal = direction in ("left", "right")
        color = self.SPACING_COLORS[spacing_color]
        if match_image_size:  # image2 keeps its aspect ratio; sizes truncate as ComfyUI's int()
            h1, w1 = image1.shape[1:3]
            aspect = image2.shape[2] / image2.shape[1]
            size = (int(h1 * aspect), h1) if horizontal else (w1, int(w1 / aspect))
            image2 = common_upscale(image2.movedim(-1, 1), *size, "lanczos").movedim(1, -1)
        else:  # centred on the other's size; ComfyUI pads with the spacing grey level, black for a colour
            value = color[0] if spacing_color in ("white", "black") else 0.0
            dim = 1 if horizontal else 2
            size = max(image1.shape[dim], image2.shape[dim])
            image1, image2 = _pad_side(image1, dim, size, value), _pad_side(image2, dim, size, value)
        channels = max(image1.shape[-1], image2.shape[-1])
        image1, image2 = _to_channels(image1, channels), _to_channels(image2, channels)
        images = [image2, image1] if direction in ("left", "up") else [image1, image2]
        axis = 2 if horizontal else 1
        if spacing_width > 0:
            width = spacing_width + spacing_width % 2
            shape = list(image1.shape)
            shape[axis] = width
            spacer = torch.zeros(shape, dtype=image1.dtype)
            spacer[..., :min(3, channels)] = torch.tensor(color[:min(3, channels)], dtype=image1.dtype)
            if channels == 4:
                spacer[..., 3] = 1.0
            images.insert(1, spacer)
        return (torch.cat(images, dim=axis),)


NODE_CLASS_MAPPINGS = {
    "LoadImage": LoadImage, "LoadImageOutput": LoadImageOutput, "LoadImageMask": LoadImageMask,
    "SaveImage": SaveImage, "PreviewImage": PreviewImage, "SaveImageWebsocket": SaveImageWebsocket,
    "ImageInvert": ImageInvert, "EmptyImage": EmptyImage, "ImageBatch": ImageBatch, "ImageScale": ImageScale,
    "ImageScaleBy": ImageScaleBy, "ImagePadForOutpaint": ImagePadForOutpaint,
    "ImageScaleToTotalPixels": ImageScaleToTotalPixels, "ImageStitch": ImageStitch,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadImage": "Load Image", "LoadImageOutput": "Load Image (from Outputs)", "LoadImageMask": "Load Image (as Mask)",
    "SaveImage": "Save Image", "PreviewImage": "Preview Image", "ImageInvert": "Invert Image",
    "ImageBatch": "Batch Images", "ImageScale": "Upscale Image", "ImageScaleBy": "Upscale Image By",
    "ImagePadForOutpaint": "Pad Image for Outpainting", "ImageStitch": "Image Stitch",
}
