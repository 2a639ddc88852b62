"""DPM-Solver++ family (Lu et al. 2022, arXiv 2211.01095): exponential-integrator steps on the x0 prediction.

Time is t = -log(sigma) (the half-log-SNR in the VE view). The SDE variants draw their noise from a Brownian
tree seeded with ``extra_args["seed"]``; ``_gpu`` variants keep the tree on x's device instead of the CPU,
which changes the random numbers but nothing else.
"""
from __future__ import annotations

import torch

from .common import (ancestral_step, brownian_noise_sampler, denoise_with_uncond, flow_ancestral_step,
                     flow_interpolate, is_rectified_flow, model_sampling_of, offset_first_sigma_for_snr,
                     seeded_noise_sampler, step_callback, to_d)


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                              s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(2S) single-step second order down to sigma_down, then ancestral noise."""
    if is_rectified_flow(model):
        return _dpmpp_2s_ancestral_flow(model, x, sigmas, extra_args, callback, eta, s_noise, noise_sampler)
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, _sigma(s) * s_in, **extra_args)
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def _dpmpp_2s_ancestral_flow(model, x, sigmas, extra_args, callback, eta, s_noise, noise_sampler):
    """DPM-Solver++(2S) ancestral on the straight flow path: a model call at the half-log-SNR midpoint between
    sigma and sigma_down, whose x0 estimate carries the whole step (see ``flow_ancestral_step``)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    ms = model_sampling_of(model)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, rescale, sigma_up = flow_ancestral_step(sigmas[i], sigmas[i + 1], eta)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
            continue
        if sigmas[i] == 1.0:  # pure noise: the half-log-SNR is -inf, so take the midpoint just below 1 (ComfyUI's)
            sigma_mid = 0.9999
        else:
            sigma_mid = ms.sigma_from_half_log_snr(
                ms.half_log_snr(sigmas[i]).lerp(ms.half_log_snr(sigma_down), 0.5))
        denoised_2 = model(flow_interpolate(x, denoised, sigmas[i], sigma_mid), sigma_mid * s_in, **extra_args)
        x = flow_interpolate(x, denoised_2, sigmas[i], sigma_down)
        if eta > 0:
            x = rescale * x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                     s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(2S) ancestral with CFG++ (the guidance delta is folded into x before each update).

    The final update of a step folds in the uncond of the *midpoint* call, as ComfyUI does.
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised, uncond = denoise_with_uncond(model, x, sigmas[i] * s_in, extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma(s) / _sigma(t)) * (x + (denoised - uncond)) - (-h * 0.5).expm1() * denoised
            denoised_2, uncond = denoise_with_uncond(model, x_2, _sigma(s) * s_in, extra_args)
            x = (_sigma(t_next) / _sigma(t)) * (x + (denoised - uncond)) - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                     noise_sampler=None, r=1 / 2, cpu_noise=True):
    """DPM-Solver++ stochastic, two stages per step (the first at fraction ``r`` of the step in lambda)."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:
        noise_sampler = brownian_noise_sampler(x, sigmas, extra_args.get("seed"), cpu=cpu_noise)
    ms = model_sampling_of(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    s_in = x.new_ones([x.shape[0]])
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        lambda_s_1 = lambda_s + r * h
        sigma_s_1 = ms.sigma_from_half_log_snr(lambda_s_1)
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()

        # Stage 1: to lambda_s_1 (ancestral split done in the "sigma / alpha" scale).
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + alpha_s_1 * noise_sampler(sigmas[i], sigma_s_1) * s_noise * su
        denoised_2 = model(x_2, sigma_s_1 * s_in, **extra_args)

        # Stage 2: the full step with the blended x0 estimate.
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                         noise_sampler=None, r=1 / 2):
    return sample_dpmpp_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, r,
                            cpu_noise=False)


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M): second-order multistep, reusing the previous step's x0 estimate."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old_denoised is not None and sigmas[i + 1] != 0:
            r = (t - _t(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        else:
            denoised_d = denoised
        x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M) with CFG++: the step runs along the unconditional prediction."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_uncond = None
    for i in range(len(sigmas) - 1):
        denoised, uncond = denoise_with_uncond(model, x, sigmas[i] * s_in, extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        mix = -torch.exp(-h) * uncond
        if old_uncond is not None and sigmas[i + 1] != 0:
            r = (t - _t(sigmas[i - 1])) / h
            mix = mix - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


def _sde_noise(noise_sampler, sigmas, i, h, eta, s_noise):
    """The fresh noise of one (2M/3M) SDE step: std sigma_next * sqrt(1 - exp(-2 h eta))."""
    return noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, solver_type="midpoint", cpu_noise=True):
    """DPM-Solver++(2M) SDE; ``solver_type`` picks the midpoint or Heun form of the second-order correction."""
    if len(sigmas) <= 1:
        return x
    if solver_type not in {"heun", "midpoint"}:
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:
        noise_sampler = brownian_noise_sampler(x, sigmas, extra_args.get("seed"), cpu=cpu_noise)
    ms = model_sampling_of(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    s_in = x.new_ones([x.shape[0]])
    old_denoised, h, h_last = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta > 0 and s_noise > 0:
                x = x + _sde_noise(noise_sampler, sigmas, i, h, eta, s_noise)
        old_denoised, h_last = denoised, h
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                            noise_sampler=None, solver_type="midpoint"):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               solver_type, cpu_noise=False)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                             s_noise=1.0, noise_sampler=None, solver_type="heun"):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               solver_type)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                 s_noise=1.0, noise_sampler=None, solver_type="heun"):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               solver_type, cpu_noise=False)


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, cpu_noise=True):
    """DPM-Solver++(3M) SDE: third-order multistep from the last three x0 estimates."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:
        noise_sampler = brownian_noise_sampler(x, sigmas, extra_args.get("seed"), cpu=cpu_noise)
    ms = model_sampling_of(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    s_in = x.new_ones([x.shape[0]])
    denoised_1, denoised_2 = None, None
    h, h_1, h_2 = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
            elif h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + (alpha_t * phi_2) * d
            if eta > 0 and s_noise > 0:
                x = x + _sde_noise(noise_sampler, sigmas, i, h, eta, s_noise)
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                            noise_sampler=None):
    return sample_dpmpp_3m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               cpu_noise=False)
