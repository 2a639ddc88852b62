"""DifferentialDiffusion's per-step mask: the thresholding against known sigmas, and the sampler hook that applies
it at every model call of every sampler (model_options["denoise_mask_function"])."""
from __future__ import annotations

import pytest
import torch

from engine.sampling.differential_diffusion import mask_function, threshold_mask
from engine.sampling.ksampler import sample
from engine.sampling.model_sampling import FlowModelSampling, discrete_model_sampling

from .toys import FlowGaussian, Gaussian, Guided

MASK = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])


def thresholded(ms, sigmas, sigma, strength=1.0):
    return threshold_mask(torch.tensor([sigma]), MASK, {"model_sampling": ms, "sigmas": sigmas}, strength)


def test_flow_threshold_follows_the_fraction_of_timesteps_left():
    # timestep = 1000 sigma; the run ends at 0, so it counts down to the model's smallest sigma (t = 1).
    ms = FlowModelSampling()
    sigmas = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    assert thresholded(ms, sigmas, 1.0).tolist() == [0, 0, 0, 0, 1]  # threshold 1: only the fully masked
    assert thresholded(ms, sigmas, 0.75).tolist() == [0, 0, 0, 1, 1]  # 749 / 999
    assert thresholded(ms, sigmas, 0.5).tolist() == [0, 0, 1, 1, 1]  # 499 / 999
    assert thresholded(ms, sigmas, 0.25).tolist() == [0, 1, 1, 1, 1]  # 249 / 999
    # strength blends the hard mask with the soft one
    assert torch.allclose(thresholded(ms, sigmas, 0.5, strength=0.5), torch.tensor([0, 0.125, 0.75, 0.875, 1]))
    assert thresholded(ms, sigmas, 0.5, strength=0.0).tolist() == [0, 0, 1, 1, 1]  # 0 means "not set": hard


def test_discrete_threshold_counts_from_the_runs_first_to_its_last_sigma():
    ms = discrete_model_sampling("eps")
    at = ms.sigmas  # sigma at each timestep
    # a run that stops early (KSamplerAdvanced end step): from timestep 999 down to 199
    sigmas = torch.stack((at[999], at[599], at[199]))
    assert thresholded(ms, sigmas, float(at[599])).tolist() == [0, 0, 1, 1, 1]  # (599 - 199) / 800 = 0.5
    assert thresholded(ms, sigmas, float(at[399])).tolist() == [0, 1, 1, 1, 1]  # 0.25
    # a partial denoise starts lower: the threshold is relative to the run's own first sigma
    sigmas = torch.stack((at[499], at[249], torch.tensor(0.0)))
    assert thresholded(ms, sigmas, float(at[249])).tolist() == [0, 0, 1, 1, 1]  # 249 / 499


class Recording:
    """A denoise_mask_function that records its calls and returns the mask it is given."""

    def __init__(self):
        self.calls = []

    def __call__(self, sigma, mask, extra_options):
        self.calls.append((float(sigma[0]), extra_options["sigmas"], extra_options["model_sampling"]))
        return mask


class Counting:
    """A guided toy denoiser that records the sigma of each model call, by either protocol entry."""

    def __init__(self):
        self.inner = Guided(Gaussian(0.5, 0.3), Gaussian(0.2, 0.3), 2.0)
        self.sigmas = []

    def __call__(self, x, sigma, **extra_args):
        return self.denoise_with_uncond(x, sigma)[0]

    def denoise_with_uncond(self, x, sigma, **extra_args):
        self.sigmas.append(float(sigma[0]))
        return self.inner.denoise_with_uncond(x, sigma)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_sde", "ddim", "lcm",
                                     "uni_pc", "euler_cfg_pp"])
def test_the_hook_makes_the_mask_of_every_model_call(sampler):
    model, hook = Counting(), Recording()
    sigmas = torch.tensor([14.5, 4.0, 1.25, 0.25, 0.0])
    latent, noise = torch.zeros(1, 4, 4, 4), torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    sample(sampler, model, noise, latent, sigmas, seed=1, denoise_mask=torch.ones(1, 4, 4, 4),
           denoise_mask_function=hook)
    assert [c[0] for c in hook.calls] == model.sigmas and len(model.sigmas) >= 4
    assert all(c[1] is sigmas for c in hook.calls)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_thresholding_changes_sampling_where_the_mask_is_soft_only(sampler):
    ms = FlowModelSampling()
    model = FlowGaussian(0.5, 0.3, ms)
    sigmas = torch.linspace(1.0, 0.0, 9)
    g = torch.Generator().manual_seed(3)
    latent, noise = torch.randn(1, 1, 1, 5, generator=g), torch.randn(1, 1, 1, 5, generator=g)
    mask = MASK.reshape(1, 1, 1, 5)
    plain = sample(sampler, model, noise, latent, sigmas, seed=1, denoise_mask=mask)
    differential = sample(sampler, model, noise, latent, sigmas, seed=1, denoise_mask=mask,
                          denoise_mask_function=mask_function(1.0))
    # mask 0 keeps the source and mask 1 is generated either way; the gradient in between differs
    assert torch.equal(differential[..., 0], latent[..., 0]) and torch.equal(plain[..., 0], latent[..., 0])
    assert torch.allclose(differential[..., 4], plain[..., 4])
    assert not torch.allclose(differential[..., 1:4], plain[..., 1:4], atol=1e-3)
