"""One contract for every sampler (diffusers-style shared checks) plus per-family numerical checks.

The toy data are Gaussian or a point mass, where the exact denoiser and the probability-flow ODE solution are
known, so convergence can be checked against closed forms rather than against recorded outputs.
"""
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from engine.sampling.model_sampling import FlowModelSampling, discrete_model_sampling
from engine.sampling.samplers import SAMPLER_NAMES, SAMPLERS
from engine.sampling.samplers.common import BrownianTreeNoiseSampler, offset_first_sigma_for_snr
from engine.sampling.samplers.multistep import deis_coefficients, lms_coefficient
from engine.sampling.samplers.sa_solver import adams_coefficients
from engine.sampling.schedules import sigmas_for

from .toys import FlowGaussian, Gaussian, Guided, PointMass

UPSTREAM = json.loads((Path(__file__).parent / "upstream_golden.json").read_text())
UPSTREAM_FLOW = json.loads((Path(__file__).parent / "upstream_flow_golden.json").read_text())

# The sampler enum of KSampler in the captured /object_info of ComfyUI 0.3.64.
CAPTURED_SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]

STOCHASTIC = {
    "euler_ancestral", "euler_ancestral_cfg_pp", "dpm_2_ancestral", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
    "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver",
    "sa_solver_pece"}
DETERMINISTIC = [n for n in CAPTURED_SAMPLERS if n not in STOCHASTIC]
# Where a sampler stops instead of sigma 0 (the last positive sigma, or 0.001 for UniPC).
STOPS_EARLY = {"dpm_fast", "dpm_adaptive", "uni_pc", "uni_pc_bh2"}
FIRST_ORDER = {"euler", "euler_cfg_pp", "ddim", "heunpp2", "gradient_estimation", "gradient_estimation_cfg_pp"}

MS = discrete_model_sampling()
FLOW_MS = FlowModelSampling(shift=3.0, multiplier=1.0)


@pytest.fixture(autouse=True)
def _quiet_torchsde():
    # torchsde warns when a query sits a float32 ulp outside the tree's interval (upstream logs the same).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
        yield


def run(name, model, steps=8, shape=(2, 4, 3, 3), seed=42, data_seed=0, callback=None, **options):
    sigmas = sigmas_for(MS, "karras", steps, sampler_name=name)
    start = torch.randn(shape, generator=torch.Generator().manual_seed(data_seed)) * sigmas[0]
    out = SAMPLERS[name](model, start, sigmas, extra_args={"seed": seed}, callback=callback, **options)
    return out, start, sigmas


def end_sigma(name, sigmas):
    if name in ("uni_pc", "uni_pc_bh2"):
        return torch.tensor(0.001)
    return sigmas[-2] if name in ("dpm_fast", "dpm_adaptive") else sigmas[-1]


def test_names_and_order_match_comfyui():
    assert SAMPLER_NAMES == CAPTURED_SAMPLERS
    assert len(set(SAMPLERS.values())) == 41  # ddim shares euler's algorithm


@pytest.mark.parametrize("name", CAPTURED_SAMPLERS)
def test_matches_upstream(name):
    """Same output as upstream ComfyUI's own sampler code on the recorded toy problem (see samplers_setup)."""
    sigmas = sigmas_for(MS, "karras", 6, sampler_name=name)
    x = (torch.arange(12, dtype=torch.float32).reshape(2, 1, 2, 3) - 5.5) / 3 * sigmas[0]
    model = Guided(Gaussian(0.5, 0.3), Gaussian(-0.2, 0.5), 3.0)
    out = SAMPLERS[name](model, x, sigmas, extra_args={"seed": 42})
    torch.testing.assert_close(out.flatten(), torch.tensor(UPSTREAM["samplers"][name]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CAPTURED_SAMPLERS)
def test_matches_upstream_on_a_flow_model(name):
    """The same on rectified-flow model sampling (Z-Image, ModelSamplingAuraFlow), where ComfyUI switches the
    ancestral samplers to flow steps and starts the half-log-SNR samplers below sigma 1 (see the file's setup)."""
    sigmas = sigmas_for(FLOW_MS, "simple", 6, sampler_name=name)
    torch.testing.assert_close(sigmas, torch.tensor(UPSTREAM_FLOW["sigmas"][name]), rtol=1e-6, atol=1e-6)
    x = (torch.arange(12, dtype=torch.float32).reshape(2, 1, 2, 3) - 5.5) / 3 * sigmas[0]
    model = Guided(FlowGaussian(0.5, 0.3, FLOW_MS), FlowGaussian(-0.2, 0.5, FLOW_MS), 3.0)
    out = SAMPLERS[name](model, x, sigmas, extra_args={"seed": 42})
    torch.testing.assert_close(out.flatten(), torch.tensor(UPSTREAM_FLOW["samplers"][name]), rtol=1e-5, atol=1e-5)


def test_flow_schedules_start_below_sigma_one_only_for_log_snr_samplers():
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    offset = offset_first_sigma_for_snr(sigmas, FLOW_MS)
    assert float(offset[0]) == pytest.approx(FLOW_MS.percent_to_sigma(1e-4)) and float(offset[0]) < 1.0
    assert offset[1:].tolist() == [0.5, 0.0] and sigmas[0] == 1.0, "the caller's schedule is left alone"
    assert offset_first_sigma_for_snr(sigmas, MS) is sigmas
    partial_denoise = torch.tensor([0.8, 0.0])
    assert offset_first_sigma_for_snr(partial_denoise, FLOW_MS) is partial_denoise
    seen = []
    model = FlowGaussian(0.5, 0.3, FLOW_MS)
    SAMPLERS["dpmpp_2m_sde"](model, torch.ones(1, 1, 2, 2), sigmas, extra_args={"seed": 0}, callback=seen.append)
    assert [float(e["sigma"]) for e in seen] == offset[:-1].tolist()
    seen.clear()
    SAMPLERS["dpmpp_2m"](model, torch.ones(1, 1, 2, 2), sigmas, extra_args={"seed": 0}, callback=seen.append)
    assert [float(e["sigma"]) for e in seen] == [1.0, 0.5]


@pytest.mark.parametrize("name", CAPTURED_SAMPLERS)
def test_contract(name):
    events = []
    out, start, sigmas = run(name, Gaussian(), callback=events.append)
    assert out.shape == start.shape and out.dtype == start.dtype and bool(torch.isfinite(out).all())
    assert torch.equal(run(name, Gaussian())[0], out), "same seed, same result"
    if name in STOCHASTIC:
        assert not torch.equal(run(name, Gaussian(), seed=43)[0], out), "the seed must matter"
    else:
        assert torch.equal(run(name, Gaussian(), seed=43)[0], out), "deterministic samplers ignore the seed"

    assert all({"x", "i", "sigma", "sigma_hat", "denoised"} <= set(e) for e in events)
    assert [e["i"] for e in events] == list(range(len(events)))
    steps = len(sigmas) - 1
    if name == "dpm_fast":
        assert len(events) == steps // 3 + 1  # third-order steps, the remainder in one lower-order step
    elif name == "dpm_adaptive":
        assert len(events) >= 1  # one per attempted step
    else:
        assert len(events) == steps
        assert [float(e["sigma"]) for e in events] == sigmas[:-1].tolist()


@pytest.mark.parametrize("name", CAPTURED_SAMPLERS)
def test_callback_raising_stops_sampling(name):
    class Stop(Exception):
        pass

    model, seen = Gaussian(), []

    def callback(event):
        seen.append(event["i"])
        if event["i"] == 1:
            raise Stop

    with pytest.raises(Stop):
        run(name, model, callback=callback)
    calls = model.calls
    assert seen == [0, 1] and calls <= 6  # stopped at the second step, not after the run


@pytest.mark.parametrize("name", CAPTURED_SAMPLERS)
def test_point_mass_converges_to_the_data(name):
    """With a single data point the exact denoiser is constant; every sampler must land on it at sigma 0."""
    out, start, sigmas = run(name, PointMass(0.7), steps=10)
    if name in STOPS_EARLY:
        # The ODE solution for a point mass is x0 + (sigma / sigma_start) * (x_start - x0).
        expected = 0.7 + end_sigma(name, sigmas) / sigmas[0] * (start - 0.7)
        torch.testing.assert_close(out, expected, rtol=0, atol=2e-3)
    else:
        torch.testing.assert_close(out, torch.full_like(out, 0.7), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_ode_samplers_follow_the_exact_flow(name):
    data = Gaussian(0.5, 0.3)
    out, start, sigmas = run(name, data, steps=40, shape=(1, 1, 8, 8))
    exact = data.ode_solution(start, sigmas[0], end_sigma(name, sigmas))
    tolerance = 0.06 if name in FIRST_ORDER else 0.02  # data std is 0.3
    assert float((out - exact).abs().max()) < tolerance


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_ode_samplers_follow_the_exact_flow_on_a_flow_model(name):
    """Rectified flow has the same ODE in sigma (dx/dsigma = (x - x0_hat) / sigma), from sigma 1 = pure noise.
    (Karras spacing: the shifted "simple" schedule's last step, ~0.07 to 0, is too coarse for first order.)"""
    data = FlowGaussian(0.5, 0.3, FLOW_MS)
    sigmas = sigmas_for(FLOW_MS, "karras", 40, sampler_name=name)
    start = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = SAMPLERS[name](data, start, sigmas, extra_args={"seed": 42})
    exact = data.ode_solution(start, sigmas[0], end_sigma(name, sigmas))
    tolerance = 0.06 if name in FIRST_ORDER else 0.02
    assert float((out - exact).abs().max()) < tolerance


@pytest.mark.parametrize("name", sorted(STOCHASTIC - {"lcm"}))
def test_sde_samplers_reproduce_the_data_distribution(name):
    """Stochastic samplers draw from N(mu, s^2): check mean and spread over 4096 independent elements."""
    out, _, _ = run(name, Gaussian(0.5, 0.3), steps=30, shape=(1, 1, 64, 64))
    assert float(out.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(out.std()) == pytest.approx(0.3, rel=0.2)


# ComfyUI runs these with their VE-only steps on flow models too (no CONST case): their result is biased there,
# and comfyd matches it (test_matches_upstream_on_a_flow_model).
VE_ONLY_STOCHASTIC = {"ddpm", "dpmpp_2s_ancestral_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp"}


@pytest.mark.parametrize("name", sorted(STOCHASTIC - {"lcm"} - VE_ONLY_STOCHASTIC))
def test_sde_samplers_reproduce_the_data_distribution_on_a_flow_model(name):
    sigmas = sigmas_for(FLOW_MS, "karras", 30, sampler_name=name)
    start = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    out = SAMPLERS[name](FlowGaussian(0.5, 0.3, FLOW_MS), start, sigmas, extra_args={"seed": 42})
    assert float(out.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(out.std()) == pytest.approx(0.3, rel=0.2)


CFG_PP_TWINS = [("euler_cfg_pp", "euler"), ("euler_ancestral_cfg_pp", "euler_ancestral"),
                ("dpmpp_2m_cfg_pp", "dpmpp_2m"), ("res_multistep_cfg_pp", "res_multistep"),
                ("res_multistep_ancestral_cfg_pp", "res_multistep_ancestral"),
                ("gradient_estimation_cfg_pp", "gradient_estimation")]


@pytest.mark.parametrize("cfg_pp, base", CFG_PP_TWINS)
def test_cfg_pp_on_an_unguided_model_is_the_base_sampler(cfg_pp, base):
    """Without guidance the uncond is the prediction itself, and CFG++ reduces to the plain update."""
    torch.testing.assert_close(run(cfg_pp, Gaussian())[0], run(base, Gaussian())[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["euler_cfg_pp", "dpmpp_2m_cfg_pp", "res_multistep_cfg_pp",
                                  "gradient_estimation_cfg_pp"])
def test_cfg_pp_step_renoises_along_the_uncond(name):
    """A CFG++ step from sigma to sigma' lands at D + (sigma' / sigma) * (x - U): guided x0, uncond noise."""
    model = Guided(Gaussian(0.5, 0.3), Gaussian(-0.2, 0.5), 4.0)
    sigmas = torch.tensor([3.0, 1.5])
    x = torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(3)) * 3.0
    denoised, uncond = model.denoise_with_uncond(x, sigmas[:1])
    out = SAMPLERS[name](model, x, sigmas, extra_args={"seed": 0})
    torch.testing.assert_close(out, denoised + 0.5 * (x - uncond), rtol=1e-5, atol=1e-5)
    base = SAMPLERS[name.removesuffix("_cfg_pp")](model, x, sigmas, extra_args={"seed": 0})
    assert not torch.allclose(out, base, atol=1e-3)


def test_brownian_noise_is_additive_and_unit_variance():
    x = torch.zeros(1, 1, 64, 64)
    tree = BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=5, cpu=True)
    a, b, c = torch.tensor(8.0), torch.tensor(3.0), torch.tensor(0.5)
    whole = tree(a, c) * (a - c).sqrt()
    parts = tree(a, b) * (a - b).sqrt() + tree(b, c) * (b - c).sqrt()
    torch.testing.assert_close(whole, parts, rtol=1e-4, atol=1e-4)
    assert float(tree(a, b).std()) == pytest.approx(1.0, rel=0.1)
    again = BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=5, cpu=True)
    assert torch.equal(again(a, b), tree(a, b))


@pytest.mark.parametrize("name", ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde"])
def test_gpu_variants_differ_only_in_tree_placement(name):
    # On a CPU-only machine both trees live on the CPU, so results coincide.
    assert torch.equal(run(name, Gaussian())[0], run(name + "_gpu", Gaussian())[0])


def test_lms_coefficients_integrate_the_step():
    sigmas = [10.0, 6.0, 3.0, 1.5, 0.5]
    for order in (1, 2, 3, 4):
        i = order - 1
        total = sum(lms_coefficient(order, sigmas, i, j) for j in range(order))
        assert total == pytest.approx(sigmas[i + 1] - sigmas[i], rel=1e-6)


def test_deis_coefficients_integrate_the_step():
    """The Lagrange basis sums to 1, so a step's weights sum to the Euler step sigma' - sigma."""
    sigmas = sigmas_for(MS, "karras", 8)
    coefficients = deis_coefficients(sigmas, max_order=3)
    assert coefficients[0] == [] and [len(c) for c in coefficients[1:]] == [2] + [3] * 6
    for i in range(1, len(sigmas) - 2):
        assert float(sum(coefficients[i])) == pytest.approx(float(sigmas[i + 1] - sigmas[i]), rel=2e-3)


@pytest.mark.parametrize("tau", [0.0, 1.0])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_sa_solver_coefficients_reproduce_a_constant_estimate(tau, order):
    """For a constant x0 estimate the exact SDE-mean step adds alpha_t (1 - exp(-(1 + tau^2) h)) x0."""
    lambdas = -torch.tensor([8.0, 5.0, 3.0, 2.0, 1.2]).log()
    lambda_s, lambda_t = lambdas[order - 1], lambdas[order]
    sigma_next = (-lambda_t).exp()
    b = adams_coefficients(sigma_next, lambdas[:order], lambda_s, lambda_t, tau)
    h = lambda_t - lambda_s
    expected = sigma_next * lambda_t.exp() * (1 - torch.exp(-(1 + tau ** 2) * h))
    assert float(b.sum()) == pytest.approx(float(expected), rel=1e-4)
    assert math.isfinite(float(b.abs().max()))
