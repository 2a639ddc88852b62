import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.sampling import schedules
from engine.sampling.model_sampling import discrete_model_sampling
from engine.sampling.schedules import (SCHEDULER_NAMES, SCHEDULERS, calculate_sigmas, get_sigmas_exponential,
                                       get_sigmas_karras, get_sigmas_kl_optimal, is_max_denoise, sigmas_for,
                                       trim_sigmas)

# Produced by running upstream ComfyUI 0.3.64's own scheduler / sampler code on CPU (see "samplers_setup").
UPSTREAM = json.loads((Path(__file__).parent / "upstream_golden.json").read_text())

# The scheduler enum of KSampler in the captured /object_info of ComfyUI 0.3.64.
CAPTURED_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                       "linear_quadratic", "kl_optimal"]


@pytest.fixture(scope="module")
def ms():
    return discrete_model_sampling()


def table(ms) -> list[float]:
    return [float(s) for s in ms.sigmas]


def test_names_and_order_match_comfyui():
    assert SCHEDULER_NAMES == CAPTURED_SCHEDULERS
    assert list(SCHEDULERS) == CAPTURED_SCHEDULERS


@pytest.mark.parametrize("name", CAPTURED_SCHEDULERS)
@pytest.mark.parametrize("steps", [1, 2, 7, 20])
def test_shape_and_monotonicity(ms, name, steps):
    sigmas = SCHEDULERS[name](ms, steps)
    if name == "kl_optimal" and steps == 1:  # it divides by steps - 1: upstream gives [nan, 0] too
        assert torch.isnan(sigmas[0]) and sigmas.tolist()[1:] == [0.0]
        return
    assert sigmas.dtype == torch.float32 and sigmas.device.type == "cpu"
    assert float(sigmas[-1]) == 0.0
    assert bool((sigmas[:-1] >= sigmas[1:]).all())
    if name not in ("beta", "ddim_uniform"):
        assert len(sigmas) == steps + 1


@pytest.mark.parametrize("name", CAPTURED_SCHEDULERS)
def test_ten_steps_match_upstream(ms, name):
    expected = torch.tensor(UPSTREAM["schedules_10_steps"][name])
    torch.testing.assert_close(calculate_sigmas(ms, name, 10), expected, rtol=1e-6, atol=1e-7)


def test_karras_closed_form():
    n, lo, hi, rho = 9, 0.03, 14.6, 7.0
    ramp = np.linspace(0, 1, n)
    expected = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    sigmas = get_sigmas_karras(n, lo, hi, rho)
    np.testing.assert_allclose(sigmas[:-1].numpy(), expected, rtol=1e-5)
    assert float(sigmas[0]) == pytest.approx(hi, rel=1e-6) and float(sigmas[-2]) == pytest.approx(lo, rel=1e-5)


def test_exponential_closed_form():
    sigmas = get_sigmas_exponential(5, 0.1, 10.0)
    np.testing.assert_allclose(sigmas[:-1].numpy(), [10.0, 10 ** 0.5, 1.0, 10 ** -0.5, 0.1], rtol=1e-5)


def test_kl_optimal_closed_form():
    sigmas = get_sigmas_kl_optimal(4, 0.1, 10.0)
    frac = np.arange(4) / 3
    expected = np.tan(frac * math.atan(0.1) + (1 - frac) * math.atan(10.0))
    np.testing.assert_allclose(sigmas[:-1].numpy(), expected, rtol=1e-5)


def test_normal_is_uniform_in_timestep(ms):
    """normal: timesteps linspace(999, 0, steps), sigma interpolated in log-sigma between table entries."""
    steps = 6
    log_table = np.log(np.array(table(ms), dtype=np.float64))
    ts = np.linspace(999, 0, steps)
    expected = np.exp(np.interp(ts, np.arange(1000), log_table))
    sigmas = SCHEDULERS["normal"](ms, steps)
    np.testing.assert_allclose(sigmas[:-1].numpy(), expected, rtol=1e-5)


def test_sgm_uniform_drops_the_last_timestep(ms):
    steps = 4
    log_table = np.log(np.array(table(ms), dtype=np.float64))
    ts = np.linspace(999, 0, steps + 1)[:-1]
    expected = np.exp(np.interp(ts, np.arange(1000), log_table))
    np.testing.assert_allclose(SCHEDULERS["sgm_uniform"](ms, steps)[:-1].numpy(), expected, rtol=1e-5)


def test_simple_strides_the_table_from_the_top(ms):
    t = table(ms)
    assert SCHEDULERS["simple"](ms, 4).tolist() == [t[-1], t[-251], t[-501], t[-751], 0.0]


def test_ddim_uniform_strides_from_index_one(ms):
    t = table(ms)
    expected = [t[k] for k in range(1, 1000, 250)][::-1] + [0.0]
    assert SCHEDULERS["ddim_uniform"](ms, 4).tolist() == expected
    # 1000 // 3 = 333 gives four picks (1, 334, 667, 1000 is out): one more sigma than steps + 1.
    assert len(SCHEDULERS["ddim_uniform"](ms, 3)) == 4


def test_beta_drops_repeated_timesteps(ms):
    many = SCHEDULERS["beta"](ms, 2000)
    assert len(many) < 2001
    assert bool((many[:-1] > many[1:]).all())  # strictly decreasing: duplicates removed
    assert float(many[0]) == float(ms.sigma_max)


def test_linear_quadratic_starts_linear(ms):
    sigmas = SCHEDULERS["linear_quadratic"](ms, 10)
    sigma_max = float(ms.sigma_max)
    # First half: sigma_max * (1 - k * 0.025 / 5).
    np.testing.assert_allclose(sigmas[:5].numpy(), [sigma_max * (1 - k * 0.005) for k in range(5)], rtol=1e-6)
    assert SCHEDULERS["linear_quadratic"](ms, 1).tolist() == [pytest.approx(sigma_max), 0.0]


def test_unknown_scheduler(ms):
    with pytest.raises(ValueError):
        calculate_sigmas(ms, "nope", 5)


def test_denoise_takes_the_tail_of_a_longer_schedule(ms):
    full = calculate_sigmas(ms, "karras", 20)
    assert torch.equal(sigmas_for(ms, "karras", 10, denoise=0.5), full[-11:])
    assert torch.equal(sigmas_for(ms, "karras", 10, denoise=1.0), calculate_sigmas(ms, "karras", 10))
    assert torch.equal(sigmas_for(ms, "karras", 10, denoise=None), calculate_sigmas(ms, "karras", 10))
    # int(10 / 0.3) = 33 steps scheduled.
    assert torch.equal(sigmas_for(ms, "normal", 10, denoise=0.3), calculate_sigmas(ms, "normal", 33)[-11:])
    assert sigmas_for(ms, "karras", 10, denoise=0.0).numel() == 0


@pytest.mark.parametrize("sampler", sorted(schedules.DISCARD_PENULTIMATE_SIGMA_SAMPLERS))
def test_discard_penultimate_sigma(ms, sampler):
    longer = calculate_sigmas(ms, "karras", 9)
    sigmas = sigmas_for(ms, "karras", 8, sampler_name=sampler)
    assert len(sigmas) == 9
    assert torch.equal(sigmas, torch.cat([longer[:-2], longer[-1:]]))
    assert len(sigmas_for(ms, "karras", 8, sampler_name="euler")) == 9


@pytest.mark.parametrize("case", UPSTREAM["ksampler_sigmas"], ids=lambda c: f"{c['scheduler']}-{c['sampler']}")
def test_ksampler_sigmas_match_upstream(ms, case):
    sigmas = sigmas_for(ms, case["scheduler"], case["steps"], case["denoise"], sampler_name=case["sampler"])
    torch.testing.assert_close(sigmas, torch.tensor(case["sigmas"]), rtol=1e-6, atol=1e-7)


def test_trim_sigmas():
    sigmas = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    assert torch.equal(trim_sigmas(sigmas, start_step=2), sigmas[2:])
    assert torch.equal(trim_sigmas(sigmas, last_step=3), sigmas[:4])
    assert trim_sigmas(sigmas, last_step=3, force_full_denoise=True).tolist() == [5.0, 4.0, 3.0, 0.0]
    assert sigmas.tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]  # input untouched
    assert torch.equal(trim_sigmas(sigmas, last_step=10, force_full_denoise=True), sigmas)
    assert trim_sigmas(sigmas, start_step=5) is None
    assert trim_sigmas(sigmas, start_step=1, last_step=2).tolist() == [4.0, 3.0]


def test_is_max_denoise(ms):
    top = float(ms.sigma_max)
    assert is_max_denoise(ms, torch.tensor([top, 0.0]))
    assert is_max_denoise(ms, torch.tensor([top * (1 + 5e-6), 0.0]))
    assert is_max_denoise(ms, torch.tensor([top * 2, 0.0]))
    assert not is_max_denoise(ms, torch.tensor([top * 0.99, 0.0]))
