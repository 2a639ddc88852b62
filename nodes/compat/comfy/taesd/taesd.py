"""`comfy.taesd.taesd`: the layers Tiny AutoEncoders (TAESD and its video variants) are built from, which packs
assemble into their own tiny VAEs."""
from __future__ import annotations

import torch
from torch import nn


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """A soft clamp to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Three 3x3 convolutions with ReLUs between, added to a (1x1-projected where the width changes) skip."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


class TAESD(nn.Module):
    """ComfyUI's TAESD: a tiny VAE from models/vae_approx decoder / encoder files, loaded by comfyd's TAESD loader
    (either file layout). `decode` takes model-space latents to images in -1..1 and `encode` takes them back. A part
    given no file is absent: using it raises NotImplementedError (ComfyUI would run it with random weights).
    `latent_channels` is ComfyUI's signature; comfyd reads the width from the file."""

    latent_magnitude = 3
    latent_shift = 0.5

    def __init__(self, encoder_path=None, decoder_path=None, latent_channels: int = 4):
        from engine.models.taesd import load_decoder, load_encoder

        super().__init__()
        cpu = torch.device("cpu")
        self.taesd_encoder = None if encoder_path is None else load_encoder(encoder_path, cpu, torch.float32)
        self.taesd_decoder = None if decoder_path is None else load_decoder(decoder_path, cpu, torch.float32)
        self.vae_scale = nn.Parameter(torch.tensor(1.0))
        self.vae_shift = nn.Parameter(torch.tensor(0.0))

    @staticmethod
    def scale_latents(x: torch.Tensor) -> torch.Tensor:
        """Raw latents -> 0..1."""
        return x.div(2 * TAESD.latent_magnitude).add(TAESD.latent_shift).clamp(0, 1)

    @staticmethod
    def unscale_latents(x: torch.Tensor) -> torch.Tensor:
        """0..1 -> raw latents."""
        return x.sub(TAESD.latent_shift).mul(2 * TAESD.latent_magnitude)

    @staticmethod
    def _part(module, name: str):
        if module is None:
            raise NotImplementedError(f"this TAESD was made without a {name} file")
        return module

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        # comfyd's (diffusers') tiny decoder already answers in -1..1
        return self._part(self.taesd_decoder, "decoder")((x - self.vae_shift) * self.vae_scale)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # ... and its tiny encoder takes images in -1..1
        return self._part(self.taesd_encoder, "encoder")(x) / self.vae_scale + self.vae_shift
