"""TAESD decoders (madebyollin's tiny autoencoders) for sampling previews: models/vae_approx/taesd_decoder.*,
taesdxl_decoder.*, taef1_decoder.* as ComfyUI finds them, loaded into diffusers' DecoderTiny.

The released files are the original ``nn.Sequential`` (a parameter-free clamp at index 0, so a conv's key is one
index above diffusers' ``layers.N``); files in diffusers' layout (``decoder.layers.N...``) load too. The latent
width comes from the first conv; everything else is TAESD's fixed shape.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .detect import CheckpointError
from .load import CastingReader, assemble, open_checkpoint

# Latent space -> the decoder file name ComfyUI looks for (any extension) in models/vae_approx.
DECODER_NAMES = {"sd": "taesd_decoder", "sdxl": "taesdxl_decoder", "flux": "taef1_decoder"}
BLOCKS, WIDTHS = (3, 3, 3, 1), (64, 64, 64, 64)
_ORIGINAL_KEY = re.compile(r"^(\d+)\.(.+)$")


def find_decoder(space: str, filenames: list[str]) -> str | None:
    """The vae_approx file for a latent space: the first whose name starts with its decoder name."""
    prefix = DECODER_NAMES.get(space)
    return next((name for name in filenames if prefix and name.startswith(prefix)), None)


def _diffusers_name(key: str) -> str | None:
    if key.startswith("decoder.layers."):
        return key[len("decoder."):]
    match = _ORIGINAL_KEY.match(key)
    return f"layers.{int(match.group(1)) - 1}.{match.group(2)}" if match else None


def load_decoder(path: str | Path, device: torch.device, dtype: torch.dtype):
    from diffusers.models.autoencoders.vae import DecoderTiny

    with open_checkpoint(path, device) as file:
        names = {key: _diffusers_name(key) for key in file.shapes}
        first = next((key for key, name in names.items() if name == "layers.0.weight"), None)
        if first is None:
            raise CheckpointError(f"{file.name}: not a TAESD decoder (no first conv)")
        tensors = CastingReader(file.shapes, file.read, device, dtype)
        return assemble(
            lambda: DecoderTiny(in_channels=file.shapes[first][1], out_channels=3, num_blocks=BLOCKS,
                                block_out_channels=WIDTHS, upsampling_scaling_factor=2, act_fn="relu",
                                upsample_fn="nearest"),
            lambda _: {name: tensors[key] for key, name in names.items() if name is not None},
            "TAESD decoder", file.name)
