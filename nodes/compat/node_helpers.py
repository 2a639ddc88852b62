"""`node_helpers`: small helpers ComfyUI's nodes share and custom nodes reuse."""
from __future__ import annotations

import hashlib

import torch
from PIL import ImageFile, UnidentifiedImageError

from .comfy.cli_args import args


def conditioning_set_values(conditioning: list, values: dict | None = None, append: bool = False) -> list:
    """A copy of `conditioning` with `values` set in every entry's options (with `append`, added to what an option
    already holds, e.g. to extend a list)."""
    out = []
    for tensor, options in conditioning:
        options = dict(options)
        for key, value in (values or {}).items():
            if append and options.get(key) is not None:
                value = options[key] + value
            options[key] = value
        out.append([tensor, options])
    return out


def pillow(fn, arg):
    """`fn(arg)`, retried once with truncated images allowed when Pillow refuses a damaged file."""
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
        try:
            return fn(arg)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def hasher():
    """The hashlib constructor of --default-hashing-function."""
    return getattr(hashlib, args.default_hashing_function)


def string_to_torch_dtype(string: str) -> torch.dtype | None:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(string)


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(destination, source) [..., C] images for compositing, as ComfyUI pairs them: `source` loses the channels
    `destination` lacks, and a `destination` with more channels than `source` gets one more, opaque."""
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., :destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        destination = torch.nn.functional.pad(destination, (0, 1), value=1.0)
    return destination, source
