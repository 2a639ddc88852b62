import math

import pytest
import torch

from engine.sampling.ksampler import reshape_mask, sample
from engine.sampling.model_sampling import discrete_model_sampling
from engine.sampling.noise import prepare_noise
from engine.sampling.samplers import SAMPLERS
from engine.sampling.schedules import sigmas_for

from .toys import Gaussian, Guided

MS = discrete_model_sampling()
SHAPE = (2, 4, 4, 4)


class Recording(Gaussian):
    """A Gaussian denoiser that remembers its inputs and keyword arguments."""

    def __init__(self):
        super().__init__()
        self.inputs, self.kwargs = [], []

    def __call__(self, x, sigma, **extra_args):
        self.inputs.append(x.clone())
        self.kwargs.append(extra_args)
        return super().__call__(x, sigma)


@pytest.fixture
def latent_and_noise():
    latent = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    return latent, prepare_noise(latent, 9)


def test_empty_sigmas_return_the_latent(latent_and_noise):
    latent, noise = latent_and_noise
    assert sample("euler", Gaussian(), noise, latent, torch.FloatTensor([]), seed=9) is latent


def test_unknown_sampler(latent_and_noise):
    latent, noise = latent_and_noise
    with pytest.raises(ValueError):
        sample("nope", Gaussian(), noise, latent, sigmas_for(MS, "karras", 3), seed=9)


def test_full_denoise_scales_noise_to_the_vp_variance(latent_and_noise):
    latent, noise = latent_and_noise
    sigmas = sigmas_for(MS, "karras", 3)
    model = Recording()
    sample("euler", model, noise, latent, sigmas, seed=9)
    s0 = float(sigmas[0])
    torch.testing.assert_close(model.inputs[0], latent + noise * math.sqrt(1 + s0 ** 2))
    assert all(kwargs == {"seed": 9} for kwargs in model.kwargs)


def test_partial_denoise_adds_sigma_times_noise(latent_and_noise):
    latent, noise = latent_and_noise
    sigmas = sigmas_for(MS, "karras", 3, denoise=0.5)
    model = Recording()
    out = sample("dpmpp_2m", model, noise, latent, sigmas, seed=9)
    start = latent + noise * sigmas[0]
    torch.testing.assert_close(model.inputs[0], start)
    torch.testing.assert_close(out, SAMPLERS["dpmpp_2m"](Gaussian(), start, sigmas, extra_args={"seed": 9}))


def test_mask_keeps_the_original_outside_and_generates_inside(latent_and_noise):
    latent, noise = latent_and_noise
    sigmas = sigmas_for(MS, "karras", 6)
    mask = torch.zeros(SHAPE)
    mask[..., :2] = 1.0
    free = sample("euler_ancestral", Gaussian(), noise, latent, sigmas, seed=9)
    masked = sample("euler_ancestral", Gaussian(), noise, latent, sigmas, seed=9, denoise_mask=mask)
    torch.testing.assert_close(masked[..., 2:], latent[..., 2:])
    # The toy denoiser is elementwise, so the generated region is what an unmasked run produces there.
    torch.testing.assert_close(masked[..., :2], free[..., :2])
    everywhere = sample("euler_ancestral", Gaussian(), noise, latent, sigmas, seed=9, denoise_mask=torch.ones(SHAPE))
    torch.testing.assert_close(everywhere, free)


def test_ddim_renoises_the_kept_region_with_seed_plus_one(latent_and_noise):
    latent, noise = latent_and_noise
    sigmas = sigmas_for(MS, "karras", 4)
    mask = torch.zeros(SHAPE)
    inputs = {}
    for name in ("euler", "ddim"):
        model = Recording()
        sample(name, model, noise, latent, sigmas, seed=9, denoise_mask=mask)
        inputs[name] = model.inputs[0]
    torch.testing.assert_close(inputs["euler"], latent + sigmas[0] * noise)
    torch.testing.assert_close(inputs["ddim"], latent + sigmas[0] * prepare_noise(latent, 10))
    # Without a mask ddim is exactly euler.
    assert torch.equal(sample("ddim", Gaussian(), noise, latent, sigmas, seed=9),
                       sample("euler", Gaussian(), noise, latent, sigmas, seed=9))


def test_masked_cfg_pp_still_sees_the_uncond(latent_and_noise):
    latent, noise = latent_and_noise
    sigmas = sigmas_for(MS, "karras", 5)
    model = Guided(Gaussian(0.5, 0.3), Gaussian(-0.2, 0.5), 3.0)
    free = sample("dpmpp_2m_cfg_pp", model, noise, latent, sigmas, seed=1)
    masked = sample("dpmpp_2m_cfg_pp", model, noise, latent, sigmas, seed=1, denoise_mask=torch.ones(SHAPE))
    torch.testing.assert_close(masked, free)


def test_reshape_mask():
    mask = torch.zeros(1, 16, 16)
    mask[:, :, 8:] = 1.0
    out = reshape_mask(mask, torch.Size((3, 4, 8, 8)))
    assert out.shape == (3, 4, 8, 8)
    assert float(out[..., :3].max()) == 0.0 and float(out[..., 5:].min()) == 1.0
    three = torch.stack([torch.zeros(8, 8), torch.ones(8, 8), torch.zeros(8, 8)])
    narrowed = reshape_mask(three, torch.Size((2, 4, 8, 8)))
    assert narrowed.shape == (2, 4, 8, 8) and float(narrowed[1].min()) == 1.0 and float(narrowed[0].max()) == 0.0
