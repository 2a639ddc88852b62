"""TAESD decoders from models/vae_approx: released and diffusers layouts, against an independent forward pass."""
from __future__ import annotations

import pytest
import torch

from engine.models.detect import CheckpointError
from engine.models.taesd import find_decoder, load_decoder
from engine.sampling.preview import taesd_to_image
from tests.fixtures.taesd import decoder_state_dict, reference_decode, write_decoder


@pytest.mark.parametrize("channels, diffusers_layout", [(4, False), (16, False), (4, True)])
def test_decoder_matches_the_original_network(tmp_path, channels, diffusers_layout):
    path = write_decoder(tmp_path / "taesd_decoder.safetensors", channels, seed=3, diffusers_layout=diffusers_layout)
    decoder = load_decoder(path, torch.device("cpu"), torch.float32)
    latent = torch.randn(1, channels, 6, 5, generator=torch.Generator().manual_seed(1))
    expected = reference_decode(decoder_state_dict(channels, seed=3), latent)
    with torch.no_grad():
        got = (decoder(latent) + 1) / 2  # diffusers' decoder returns -1..1
    assert got.shape == (1, 3, 48, 40)
    assert torch.allclose(got, expected, atol=1e-5)
    image = taesd_to_image(latent, decoder)
    assert image.size == (40, 48)


def test_finding_and_refusing_files(tmp_path):
    names = ["taesdxl_decoder.safetensors", "taesd_decoder.pth", "taef1_decoder.safetensors"]
    assert find_decoder("sd", names) == "taesd_decoder.pth"
    assert find_decoder("sdxl", names) == "taesdxl_decoder.safetensors"
    assert find_decoder("flux", names) == "taef1_decoder.safetensors"
    assert find_decoder("sd", ["taesd_encoder.pth"]) is None
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "taesd_decoder.safetensors"))
    with pytest.raises(CheckpointError, match="not a TAESD decoder"):
        load_decoder(tmp_path / "taesd_decoder.safetensors", torch.device("cpu"), torch.float32)


def test_encoder_matches_the_original_network(tmp_path):
    from engine.models.taesd import load_encoder
    from tests.fixtures.taesd import encoder_state_dict, reference_encode, write_encoder

    encoder = load_encoder(write_encoder(tmp_path / "taesd_encoder.safetensors", 16, seed=4), torch.device("cpu"),
                           torch.float32)
    image = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = encoder(image * 2 - 1)  # diffusers' encoder takes -1..1
    expected = reference_encode(encoder_state_dict(16, seed=4), image)
    assert got.shape == (1, 16, 6, 5) and torch.allclose(got, expected, atol=1e-5)


def test_vae_names_need_both_halves():
    from engine.models.taesd import vae_names

    assert vae_names(["taesd_decoder.pth", "taesd_encoder.pth", "taef1_decoder.safetensors",
                      "taesdxl_encoder.safetensors", "taesdxl_decoder.safetensors"]) == ["taesd", "taesdxl"]
    assert vae_names(["taef1_decoder.safetensors"]) == []
