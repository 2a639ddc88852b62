"""All-in-one checkpoints of the DiT families (FLUX.1, SD3 / SD3.5), as CheckpointLoaderSimple loads them: the
diffusion model under ``model.diffusion_model.``, its text encoders under ``text_encoders.<clip_l | clip_g |
t5xxl>.transformer.`` and the VAE under ``vae.`` or ``first_stage_model.``; which encoders are there is read off
the keys (some SD3.5 files carry none)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import t5
from .detect import detect_text_encoder, detect_vae, unrecognised
from .load import CastingReader, build_text_encoder, build_vae

CLIP_PREFIXES = {"l": "text_encoders.clip_l.transformer.", "g": "text_encoders.clip_g.transformer."}
VAE_PREFIXES = ("vae.", "first_stage_model.")


@dataclass
class Companions:
    text_encoders: dict  # ComfyUI's token key ("l", "g", "t5xxl") -> transformers model
    vae: torch.nn.Module


def load_companions(file, device: torch.device, dtypes: dict[str, torch.dtype]) -> Companions:
    """The text encoders and VAE of an open all-in-one file (``load.open_checkpoint``); ``dtypes`` by part:
    "clip", "t5xxl", "vae"."""
    def reader(part):  # T5 keeps fp8 weights fp8 (t5.build_t5)
        return CastingReader(file.shapes, file.read, device, dtypes[part], keep_fp8=part == "t5xxl")

    encoders = {}
    for name, prefix in CLIP_PREFIXES.items():
        spec = detect_text_encoder(file.shapes, prefix, name)
        if spec is not None:
            encoders[name] = build_text_encoder(spec, reader("clip"), name=file.name).model
    t5_spec = t5.detect_t5(file.shapes)
    if t5_spec is not None:
        encoders["t5xxl"] = t5.build_t5(t5_spec, reader("t5xxl"), name=file.name)
    vae_spec = detect_vae(file.shapes, VAE_PREFIXES)
    if vae_spec is None:
        raise unrecognised(file.name, "a checkpoint without its VAE (load the diffusion model with UNETLoader and "
                                      "the VAE with VAELoader)")
    return Companions(encoders, build_vae(vae_spec, reader("vae"), name=file.name))
