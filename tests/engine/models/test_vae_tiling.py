"""Tiled VAE decode/encode: same shapes as untiled, identical when the image fits one tile."""
from __future__ import annotations

import torch

from engine.models.load import load_checkpoint
from engine.models.vae import VAE
from tests.fixtures.checkpoints import write_sd15


def test_tiled_matches_untiled_shapes_and_single_tile_results(tmp_path):
    write_sd15(tmp_path / "m.safetensors")
    vae = VAE(load_checkpoint(tmp_path / "m.safetensors", "cpu", torch.float32).vae)
    latent = torch.randn(2, 4, 24, 16, generator=torch.Generator().manual_seed(0))
    whole = vae.decode(latent)
    assert vae.decode_tiled(latent, tile=16, overlap=4).shape == whole.shape == (2, 192, 128, 3)
    assert torch.equal(vae.decode_tiled(latent, tile=64, overlap=8), whole)
    pixels = torch.rand(1, 96, 64, 3, generator=torch.Generator().manual_seed(1))
    encoded = vae.encode(pixels)
    assert vae.encode_tiled(pixels, tile=64, overlap=16).shape == encoded.shape == (1, 4, 12, 8)
    assert torch.equal(vae.encode_tiled(pixels, tile=128, overlap=16), encoded)
