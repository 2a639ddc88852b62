import math

import numpy as np
import pytest
import torch

from engine.sampling.model_sampling import ModelSampling, discrete_model_sampling


def reference_sigmas() -> np.ndarray:
    """SD's schedule from its definition, in float64: linear in sqrt(beta) from 0.00085 to 0.012, 1000 steps."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    return np.sqrt((1 - alphas_cumprod) / alphas_cumprod)


@pytest.fixture(scope="module")
def ms() -> ModelSampling:
    return discrete_model_sampling()


def test_sigma_table_matches_the_definition(ms):
    ref = reference_sigmas()
    assert ms.sigmas.dtype == torch.float32 and ms.sigmas.shape == (1000,)
    np.testing.assert_allclose(ms.sigmas.numpy(), ref.astype(np.float32), rtol=1e-6)
    # The log is taken in float64, then rounded (not the log of the rounded value).
    np.testing.assert_allclose(ms.log_sigmas.numpy(), np.log(ref).astype(np.float32), rtol=1e-6)
    assert float(ms.sigma_min) == pytest.approx(0.0292, abs=1e-4)
    assert float(ms.sigma_max) == pytest.approx(14.6146, abs=1e-4)


def test_timestep_is_the_nearest_entry_in_log_sigma(ms):
    for k in (0, 1, 250, 998, 999):
        assert int(ms.timestep(ms.sigmas[k])) == k
    k = 400
    midpoint = math.sqrt(float(ms.sigmas[k]) * float(ms.sigmas[k + 1]))
    assert int(ms.timestep(torch.tensor(midpoint * 0.999))) == k
    assert int(ms.timestep(torch.tensor(midpoint * 1.001))) == k + 1
    batch = ms.timestep(ms.sigmas[[3, 700]])
    assert batch.dtype == torch.int64 and batch.tolist() == [3, 700]


def test_sigma_interpolates_log_sigma_and_clamps(ms):
    torch.testing.assert_close(ms.sigma(torch.tensor([0, 10, 999])), ms.sigmas[[0, 10, 999]], rtol=1e-6, atol=0)
    half = float(ms.sigma(torch.tensor(499.5)))
    assert half == pytest.approx(math.sqrt(float(ms.sigmas[499]) * float(ms.sigmas[500])), rel=1e-6)
    assert float(ms.sigma(torch.tensor(-5.0))) == float(ms.sigma(torch.tensor(0)))
    assert float(ms.sigma(torch.tensor(1500.0))) == float(ms.sigma(torch.tensor(999)))


def test_percent_to_sigma(ms):
    assert ms.percent_to_sigma(0.0) == 999999999.9
    assert ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(math.sqrt(float(ms.sigmas[499]) * float(ms.sigmas[500])), rel=1e-6)
    assert ms.percent_to_sigma(0.2) > ms.percent_to_sigma(0.8)


def test_zero_terminal_snr_rescale():
    zsnr = discrete_model_sampling(zsnr=True)
    plain = discrete_model_sampling()
    # The first timestep keeps its SNR; the last one gets alpha_bar pinned to 4.8973451890853435e-08.
    assert float(zsnr.sigmas[0]) == pytest.approx(float(plain.sigmas[0]), rel=1e-5)
    a = 4.8973451890853435e-08
    assert float(zsnr.sigma_max) == pytest.approx(math.sqrt((1 - a) / a), rel=1e-6)
    assert bool((zsnr.sigmas[1:] > zsnr.sigmas[:-1]).all())


@pytest.mark.parametrize("sigma", [torch.tensor(2.5), torch.tensor([0.1, 7.0])])
def test_eps_and_v_predictions_recover_x0(sigma):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    s = sigma.view(-1, 1, 1, 1) if sigma.ndim else sigma
    x = x0 + s * eps
    eps_model, v_model = discrete_model_sampling("eps"), discrete_model_sampling("v_prediction")
    torch.testing.assert_close(eps_model.calculate_denoised(sigma, eps, x), x0, rtol=1e-5, atol=1e-5)
    # v = alpha * eps - sigma_vp * x0 with alpha = 1 / sqrt(1 + s^2), sigma_vp = s / sqrt(1 + s^2).
    v = (eps - s * x0) / (1 + s ** 2) ** 0.5
    torch.testing.assert_close(v_model.calculate_denoised(sigma, v, x), x0, rtol=1e-5, atol=1e-5)
    for model in (eps_model, v_model):
        torch.testing.assert_close(model.calculate_input(sigma, x), x / (s ** 2 + 1) ** 0.5)


def test_noise_scaling_and_inverse(ms):
    g = torch.Generator().manual_seed(1)
    noise, latent = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    sigma = torch.tensor(3.0)
    torch.testing.assert_close(ms.noise_scaling(sigma, noise, latent), latent + 3.0 * noise)
    torch.testing.assert_close(ms.noise_scaling(sigma, noise, latent, max_denoise=True),
                               latent + math.sqrt(10.0) * noise)
    per_sample = ms.noise_scaling(torch.tensor([1.0, 2.0]), noise, latent)
    torch.testing.assert_close(per_sample[1], latent[1] + 2.0 * noise[1])
    assert ms.inverse_noise_scaling(sigma, latent) is latent


def test_half_log_snr_round_trip(ms):
    sigma = torch.tensor([0.03, 1.0, 14.6])
    torch.testing.assert_close(ms.half_log_snr(sigma), -sigma.log())
    torch.testing.assert_close(ms.sigma_from_half_log_snr(ms.half_log_snr(sigma)), sigma)


def test_unknown_prediction_is_rejected():
    with pytest.raises(ValueError):
        ModelSampling(torch.ones(3), prediction="x_start")
