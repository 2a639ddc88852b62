"""Rectified-flow model sampling (ModelSamplingAuraFlow / Z-Image): the shifted sigma table and the flow maths."""
from __future__ import annotations

import math

import pytest
import torch

from engine.sampling import schedules
from engine.sampling.model_sampling import FlowModelSampling
from engine.sampling.samplers import SAMPLERS


def shifted(shift, t):
    return shift * t / (1 + (shift - 1) * t)


@pytest.mark.parametrize("shift", [1.0, 1.73, 3.0, 6.0])
def test_table_is_the_shifted_uniform_time_grid(shift):
    ms = FlowModelSampling(shift=shift, multiplier=1.0)
    assert len(ms.sigmas) == 1000
    for i in (1, 250, 500, 999, 1000):
        assert math.isclose(float(ms.sigmas[i - 1]), shifted(shift, i / 1000), rel_tol=1e-6)
    assert float(ms.sigma_max) == 1.0
    # timestep is sigma times the multiplier and sigma() inverts it on the table
    sigma = torch.tensor([0.3, 0.9])
    assert torch.allclose(ms.timestep(sigma), sigma)
    assert torch.allclose(FlowModelSampling(shift, multiplier=1000.0).timestep(sigma), sigma * 1000)


def test_percent_to_sigma_runs_from_one_to_zero():
    ms = FlowModelSampling(shift=3.0, multiplier=1.0)
    assert ms.percent_to_sigma(0.0) == 1.0 and ms.percent_to_sigma(1.0) == 0.0
    assert math.isclose(ms.percent_to_sigma(0.25), shifted(3.0, 0.75))


def test_flow_maths_round_trip():
    ms = FlowModelSampling(shift=3.0, multiplier=1.0)
    x0, noise = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    sigma = torch.tensor([0.7, 0.2])
    x = ms.noise_scaling(sigma, noise, x0)
    s = sigma.view(2, 1, 1, 1)
    assert torch.allclose(x, s * noise + (1 - s) * x0)
    # a model that predicts the true velocity (noise - x0) denoises exactly
    assert torch.allclose(ms.calculate_denoised(sigma, noise - x0, x), x0, atol=1e-6)
    assert torch.equal(ms.calculate_input(sigma, x), x)
    # in flow terms alpha = 1 - sigma: lambda = log(alpha / sigma), and back
    lam = ms.half_log_snr(sigma)
    assert torch.allclose(lam, torch.log((1 - sigma) / sigma))
    assert torch.allclose(ms.sigma_from_half_log_snr(lam), sigma)


def test_simple_schedule_picks_from_the_shifted_table():
    ms = FlowModelSampling(shift=3.0, multiplier=1.0)
    sigmas = schedules.sigmas_for(ms, "simple", 4, 1.0, "euler")
    expected = [shifted(3.0, t) for t in (1.0, 0.75, 0.5, 0.25)] + [0.0]
    assert torch.allclose(sigmas, torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"])
def test_ancestral_samplers_on_a_flow_model_stay_on_the_flow_path(name):
    """With an oracle denoiser the ancestral flow steps keep x = (1 - sigma) x0 + sigma * unit noise: its mean
    and std at each sigma are those of the interpolation, and it ends at x0 exactly."""
    torch.manual_seed(0)
    x0 = torch.full((1, 4, 64, 64), 0.5)

    class Oracle:
        model_sampling = FlowModelSampling(shift=3.0, multiplier=1.0)

        def __call__(self, x, sigma, **kwargs):
            return x0

    def record(info):
        stats.append((float(info["sigma"]), float(info["x"].mean()), float(info["x"].std())))

    stats = []
    sigmas = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0])
    out = SAMPLERS[name](Oracle(), torch.randn(1, 4, 64, 64), sigmas, extra_args={"seed": 3}, callback=record)
    for sigma, mean, std in stats:
        assert math.isclose(mean, (1 - sigma) * 0.5, abs_tol=0.03), (sigma, mean)
        assert math.isclose(std, sigma, rel_tol=0.05), (sigma, std)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)
