"""Saving an IMAGE batch as one animation: animated WebP and APNG (ComfyUI's SaveAnimatedWEBP / SaveAnimatedPNG in
comfy_extras/nodes_images.py). Each frame lasts int(1000 / fps) ms; the prompt and extra_pnginfo go into the file's
metadata as ComfyUI writes them (EXIF text for WebP, "comf" chunks after the image data for APNG)."""
from __future__ import annotations

import json

from PIL.PngImagePlugin import PngInfo

from engine import folders

from .image import save_target, to_pil

WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}
EXIF_PROMPT = 0x0110  # "Model": the prompt; extra_pnginfo entries count down from "Make" (0x010f)
EXIF_FIRST_EXTRA = 0x010F


def _frame_duration(fps: float) -> int:
    return int(1000.0 / fps)


class _SaveAnimated:
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image/animation"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_images"
    EXTENSION = ""

    def __init__(self):
        # ComfyUI's instance attributes, which subclasses written for it change to save elsewhere
        self.output_dir = str(folders.get_directory("output"))
        self.type = "output"
        self.prefix_append = ""

    def _targets(self, images, filename_prefix: str, count: int = 1) -> list:
        """(path, UI entry) of the next `count` files for the batch."""
        directory, filename, counter, subfolder = save_target(
            self.type, filename_prefix + self.prefix_append, images[0].shape[1], images[0].shape[0], self.output_dir)
        names = [f"{filename}_{counter + i:05}_.{self.EXTENSION}" for i in range(count)]
        return [(directory / name, {"filename": name, "subfolder": subfolder, "type": self.type}) for name in names]


class SaveAnimatedWEBP(_SaveAnimated):
    EXTENSION = "webp"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                             "lossless": ("BOOLEAN", {"default": True}),
                             "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                             "method": (list(WEBP_METHODS),)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, fps, filename_prefix, lossless, quality, method, num_frames=0, prompt=None,
                    extra_pnginfo=None):
        """`num_frames` (not an input; ComfyUI's function takes it): frames per file, 0 for all in one."""
        frames = [to_pil(image) for image in images]
        exif = frames[0].getexif()
        if prompt is not None:
            exif[EXIF_PROMPT] = f"prompt:{json.dumps(prompt)}"
        for tag, (key, value) in zip(range(EXIF_FIRST_EXTRA, 0, -1), (extra_pnginfo or {}).items()):
            exif[tag] = f"{key}:{json.dumps(value)}"
        per_file = num_frames or len(frames)
        starts = range(0, len(frames), per_file)
        targets = self._targets(images, filename_prefix, len(starts))
        for start, (path, _) in zip(starts, targets):
            frames[start].save(path, save_all=True, append_images=frames[start + 1:start + per_file],
                               duration=_frame_duration(fps), exif=exif, lossless=lossless, quality=quality,
                               method=WEBP_METHODS[method])
        return {"ui": {"images": [entry for _, entry in targets], "animated": (per_file != 1,)}}


class SaveAnimatedPNG(_SaveAnimated):
    EXTENSION = "png"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                             "compress_level": ("INT", {"default": 4, "min": 0, "max": 9})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, fps, compress_level, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        frames = [to_pil(image) for image in images]
        metadata = PngInfo()
        entries = ([("prompt", prompt)] if prompt is not None else []) + list((extra_pnginfo or {}).items())
        for key, value in entries:
            metadata.add(b"comf", key.encode("latin-1") + b"\0" + json.dumps(value).encode("latin-1"),
                         after_idat=True)
        [(path, entry)] = self._targets(images, filename_prefix)
        frames[0].save(path, pnginfo=metadata, compress_level=compress_level, save_all=True,
                       duration=_frame_duration(fps), append_images=frames[1:])
        return {"ui": {"images": [entry], "animated": (True,)}}


NODE_CLASS_MAPPINGS = {"SaveAnimatedWEBP": SaveAnimatedWEBP, "SaveAnimatedPNG": SaveAnimatedPNG}
