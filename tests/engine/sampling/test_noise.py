import json
from pathlib import Path

import torch

from engine.sampling.noise import inpaint_noise_for_ddim, prepare_noise

UPSTREAM = json.loads((Path(__file__).parent / "upstream_golden.json").read_text())


def test_whole_batch_is_one_draw_of_the_seeded_cpu_stream():
    latent = torch.zeros(2, 4, 3, 3)
    noise = prepare_noise(latent, 7)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        assert torch.equal(noise, torch.randn(2, 4, 3, 3))
    assert noise.dtype == torch.float32 and noise.device.type == "cpu"
    assert torch.equal(prepare_noise(latent, 7), noise)
    assert not torch.equal(prepare_noise(latent, 8), noise)


def test_matches_upstream_values():
    latent = torch.zeros(2, 4, 2, 2)
    torch.testing.assert_close(prepare_noise(latent, 123).flatten(), torch.tensor(UPSTREAM["noise"]["seed_123"]))
    torch.testing.assert_close(prepare_noise(latent, 123, [2, 0]).flatten(),
                               torch.tensor(UPSTREAM["noise"]["seed_123_batch_index_2_0"]))


def test_batch_index_draws_per_image_up_to_the_largest_index():
    latent = torch.zeros(2, 4, 3, 3)
    generator = torch.Generator().manual_seed(11)
    per_image = [torch.randn(1, 4, 3, 3, generator=generator) for _ in range(4)]
    noise = prepare_noise(latent, 11, batch_index=[3, 1])
    assert torch.equal(noise, torch.cat([per_image[3], per_image[1]]))
    # Image k gets the same noise whatever slice of the batch it is sampled in.
    full = prepare_noise(torch.zeros(4, 4, 3, 3), 11, batch_index=[0, 1, 2, 3])
    assert torch.equal(noise, full[[3, 1]])
    repeated = prepare_noise(latent[:1].expand(3, 4, 3, 3), 11, batch_index=[2, 2, 0])
    assert torch.equal(repeated, torch.cat([per_image[2], per_image[2], per_image[0]]))


def test_large_seed_and_latent_dtype():
    latent = torch.zeros(1, 4, 2, 2, dtype=torch.float64)
    noise = prepare_noise(latent, 2 ** 64 - 1)
    assert noise.dtype == torch.float64
    assert torch.isfinite(noise).all()


def test_ddim_inpaint_noise_uses_seed_plus_one():
    like = torch.zeros(1, 4, 3, 3)
    assert torch.equal(inpaint_noise_for_ddim(like, 5), prepare_noise(like, 6))
    assert torch.equal(inpaint_noise_for_ddim(like, None), prepare_noise(like, 42))
