"""TAESD (madebyollin's tiny autoencoders) from models/vae_approx, as ComfyUI finds them: decoders for sampling
previews (taesd_decoder.*, taesdxl_decoder.*, taef1_decoder.*), and encoder + decoder pairs as a VAE
("taesd", "taesdxl", "taesd3", "taef1" in VAELoader), loaded into diffusers' EncoderTiny / DecoderTiny.

The released files are the original ``nn.Sequential``s. The decoder's index 0 is a parameter-free clamp, so its
conv keys sit one index above diffusers' ``layers.N``; the encoder's indices are diffusers' own. Files in
diffusers' layout (``decoder.layers.N...`` / ``encoder.layers.N...``) load too. The latent width comes from the
first (decoder) or last (encoder) conv; everything else is TAESD's fixed shape.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .detect import CheckpointError
from .load import CastingReader, assemble, open_checkpoint

# Latent space -> the TAESD that decodes it (its files are <name>_decoder.* / <name>_encoder.*).
SPACES = {"sd": "taesd", "sdxl": "taesdxl", "flux": "taef1", "sd3": "taesd3"}
# VAELoader's TAESD entries -> (scale, shift) between their latents and the full VAE's raw latents.
LATENT_STATISTICS = {"taesd": (0.18215, 0.0), "taesdxl": (0.13025, 0.0), "taesd3": (1.5305, 0.0609),
                     "taef1": (0.3611, 0.1159)}
BLOCKS, WIDTHS = (3, 3, 3, 1), (64, 64, 64, 64)
_ORIGINAL_KEY = re.compile(r"^(\d+)\.(.+)$")


def find_part(name: str, part: str, filenames: list[str]) -> str | None:
    """The vae_approx file of TAESD `name`'s `part` ("decoder" / "encoder"): the first named `<name>_<part>.*`."""
    return next((f for f in filenames if f.startswith(f"{name}_{part}.")), None)


def find_decoder(space: str, filenames: list[str]) -> str | None:
    """The preview decoder for a latent space, if models/vae_approx has it."""
    return find_part(SPACES[space], "decoder", filenames) if space in SPACES else None


def vae_names(filenames: list[str]) -> list[str]:
    """The TAESD VAEs whose encoder and decoder are both there (VAELoader lists them)."""
    return [name for name in LATENT_STATISTICS
            if find_part(name, "encoder", filenames) and find_part(name, "decoder", filenames)]


def _names(keys, part: str, offset: int) -> dict[str, str]:
    out = {}
    for key in keys:
        if key.startswith(f"{part}.layers."):
            out[key] = key[len(part) + 1:]
        elif match := _ORIGINAL_KEY.match(key):
            out[key] = f"layers.{int(match.group(1)) - offset}.{match.group(2)}"
    return out


def _load(path, device, dtype, part: str):
    from diffusers.models.autoencoders.vae import DecoderTiny, EncoderTiny

    with open_checkpoint(path, device) as file:
        names = _names(file.shapes, part, offset=1 if part == "decoder" else 0)
        convs = sorted((int(name.split(".")[1]), key) for key, name in names.items() if name.endswith(".weight")
                       and len(file.shapes[key]) == 4 and name.count(".") == 2)
        if not convs:
            raise CheckpointError(f"{file.name}: not a TAESD {part}")
        if part == "decoder":
            latent = file.shapes[convs[0][1]][1]
            factory = lambda: DecoderTiny(in_channels=latent, out_channels=3, num_blocks=BLOCKS,  # noqa: E731
                                          block_out_channels=WIDTHS, upsampling_scaling_factor=2, act_fn="relu",
                                          upsample_fn="nearest")
        else:
            latent = file.shapes[convs[-1][1]][0]
            factory = lambda: EncoderTiny(in_channels=3, out_channels=latent, num_blocks=BLOCKS[::-1],  # noqa: E731
                                          block_out_channels=WIDTHS, act_fn="relu")
        tensors = CastingReader(file.shapes, file.read, device, dtype)
        return assemble(factory, lambda _: {name: tensors[key] for key, name in names.items()},
                        f"TAESD {part}", file.name)


def load_decoder(path: str | Path, device: torch.device, dtype: torch.dtype):
    return _load(path, device, dtype, "decoder")


def load_encoder(path: str | Path, device: torch.device, dtype: torch.dtype):
    return _load(path, device, dtype, "encoder")
