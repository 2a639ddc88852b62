"""Stochastic samplers built on the VP (variance-preserving) view: DDPM, LCM, ER-SDE and SEEDS.

All but LCM-upscale draw fresh noise from the default generator seeded with ``extra_args["seed"]``.
"""
from __future__ import annotations

import numpy
import torch

from ...resize import common_upscale
from .common import model_sampling_of, offset_first_sigma_for_snr, seeded_noise_sampler, step_callback


def _ddpm_step(x_vp, sigma, sigma_next, eps, noise_sampler):
    """One ancestral DDPM step in VP space between the alpha_bar levels of ``sigma`` and ``sigma_next``."""
    alpha_bar = 1 / ((sigma * sigma) + 1)
    alpha_bar_next = 1 / ((sigma_next * sigma_next) + 1)
    alpha = alpha_bar / alpha_bar_next
    mu = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - alpha_bar).sqrt())
    if sigma_next > 0:
        variance = (1 - alpha) * (1.0 - alpha_bar_next) / (1.0 - alpha_bar)
        mu = mu + variance.sqrt() * noise_sampler(sigma, sigma_next)
    return mu


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """DDPM ancestral sampling (Ho et al. 2020), run in VP space and mapped back to the VE view each step."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        x = _ddpm_step(x / torch.sqrt(1.0 + sigmas[i] ** 2.0), sigmas[i], sigmas[i + 1], eps, noise_sampler)
        if sigmas[i + 1] != 0:
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent Consistency Model sampling: jump to the x0 estimate, re-noise to the next sigma."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    ms = model_sampling_of(model)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = ms.noise_scaling(sigmas[i + 1], noise_sampler(sigmas[i], sigmas[i + 1]), x)
    return x


@torch.no_grad()
def sample_lcm_upscale(model, x, sigmas, extra_args=None, callback=None, disable=None, total_upscale=2.0,
                       upscale_method="bislerp", upscale_steps=None):
    """LCM sampling that enlarges the x0 estimate in equal scale steps up to `total_upscale` over the first
    `upscale_steps` steps (None: about half of them) before re-noising it.

    The noise comes from torch's global generator, as in ComfyUI, where it continues the stream that drew the
    initial noise (see engine.sampling.noise)."""
    extra_args = {} if extra_args is None else extra_args
    if upscale_steps is None:
        upscale_steps = max(len(sigmas) // 2 + 1, 2)
    else:
        upscale_steps = min(upscale_steps + 1, len(sigmas) + 1)
    scales = numpy.linspace(1.0, total_upscale, upscale_steps)[1:]
    height, width = x.shape[-2:]
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        x = denoised
        if i < len(scales):
            x = common_upscale(x, round(width * scales[i]), round(height * scales[i]), upscale_method)
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * torch.randn_like(x)
    return x


def _er_sde_noise_scaler(x):
    """ER-SDE's default noise-scale function of lambda (sigma / alpha)."""
    return x * ((x ** 0.3).exp() + 10.0)


@torch.no_grad()
def sample_er_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise_sampler=None,
                  noise_scaler=None, max_stage=3):
    """Extended reverse-time SDE solver, VP ER-SDE-Solver-3 (Cui et al., arXiv 2309.06169).

    Stages 2 and 3 add first/second finite differences of the x0 estimate, with their integrals taken by a
    200-point Riemann sum.
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    noise_scaler = _er_sde_noise_scaler if noise_scaler is None else noise_scaler
    n_points = 200.0
    point_index = torch.arange(0, n_points, dtype=torch.float32, device=x.device)
    ms = model_sampling_of(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    s_in = x.new_ones([x.shape[0]])
    er_lambdas = ms.half_log_snr(sigmas).neg().exp()  # sigma_t / alpha_t
    old_denoised, old_denoised_d = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            er_s, er_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s = sigmas[i] / er_s
            alpha_t = sigmas[i + 1] / er_t
            r = noise_scaler(er_t) / noise_scaler(er_s)
            x = (alpha_t / alpha_s) * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = er_t - er_s
                step_size = -dt / n_points
                lambda_pos = er_t + point_index * step_size
                scaled_pos = noise_scaler(lambda_pos)
                s = torch.sum(1 / scaled_pos) * step_size
                denoised_d = (denoised - old_denoised) / (er_s - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * noise_scaler(er_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((lambda_pos - er_s) / scaled_pos) * step_size
                    denoised_u = (denoised_d - old_denoised_d) / ((er_s - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt ** 2) / 2 + s_u * noise_scaler(er_t)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                noise_std = (er_t ** 2 - er_s ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0)
                x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * noise_std
        old_denoised = denoised
    return x


def _phi_1(h):
    """h * phi_1(h) of exponential integrators."""
    return torch.expm1(h)


def _phi_2(h):
    """h * phi_2(h) of exponential integrators."""
    return (torch.expm1(h) - h) / h


def _continue_noise(sde_noise, r_from, r_to, h, eta, noise_sampler, sigma_from, sigma_to):
    """Carry a stage's SDE noise from fraction ``r_from`` to ``r_to`` of the step and add the new increment."""
    segment = (r_from - r_to) * h * eta
    return sde_noise * segment.exp() + segment.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_from, sigma_to)


@torch.no_grad()
def sample_seeds_2(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r=0.5):
    """SEEDS-2 (Gonzalez et al., arXiv 2305.14267): two-stage stochastic exponential solver, data prediction."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    inject_noise = eta > 0 and s_noise > 0
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
        h_eta = h * (eta + 1)
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r)
        sigma_s_1 = ms.sigma_from_half_log_snr(lambda_s_1)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()

        x_2 = sigma_s_1 / sigmas[i] * (-r * h * eta).exp() * x - alpha_s_1 * _phi_1(-r * h_eta) * denoised
        if inject_noise:
            sde_noise = (-2 * r * h * eta).expm1().neg().sqrt() * noise_sampler(sigmas[i], sigma_s_1)
            x_2 = x_2 + sde_noise * sigma_s_1 * s_noise
        denoised_2 = model(x_2, sigma_s_1 * s_in, **extra_args)

        denoised_d = torch.lerp(denoised, denoised_2, fac)
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * _phi_1(-h_eta) * denoised_d
        if inject_noise:
            sde_noise = _continue_noise(sde_noise, r, 1, h, eta, noise_sampler, sigma_s_1, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


@torch.no_grad()
def sample_seeds_3(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r_1=1.0 / 3, r_2=2.0 / 3):
    """SEEDS-3: three-stage stochastic exponential solver, data prediction."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    inject_noise = eta > 0 and s_noise > 0
    ms = model_sampling_of(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = ms.half_log_snr(sigmas[i]), ms.half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r_1)
        lambda_s_2 = torch.lerp(lambda_s, lambda_t, r_2)
        sigma_s_1 = ms.sigma_from_half_log_snr(lambda_s_1)
        sigma_s_2 = ms.sigma_from_half_log_snr(lambda_s_2)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_s_2 = sigma_s_2 * lambda_s_2.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()

        x_2 = sigma_s_1 / sigmas[i] * (-r_1 * h * eta).exp() * x - alpha_s_1 * _phi_1(-r_1 * h_eta) * denoised
        if inject_noise:
            sde_noise = (-2 * r_1 * h * eta).expm1().neg().sqrt() * noise_sampler(sigmas[i], sigma_s_1)
            x_2 = x_2 + sde_noise * sigma_s_1 * s_noise
        denoised_2 = model(x_2, sigma_s_1 * s_in, **extra_args)

        a3_2 = r_2 / r_1 * _phi_2(-r_2 * h_eta)
        a3_1 = _phi_1(-r_2 * h_eta) - a3_2
        x_3 = sigma_s_2 / sigmas[i] * (-r_2 * h * eta).exp() * x - alpha_s_2 * (a3_1 * denoised + a3_2 * denoised_2)
        if inject_noise:
            sde_noise = _continue_noise(sde_noise, r_1, r_2, h, eta, noise_sampler, sigma_s_1, sigma_s_2)
            x_3 = x_3 + sde_noise * sigma_s_2 * s_noise
        denoised_3 = model(x_3, sigma_s_2 * s_in, **extra_args)

        b3 = _phi_2(-h_eta) / r_2
        b1 = _phi_1(-h_eta) - b3
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3)
        if inject_noise:
            sde_noise = _continue_noise(sde_noise, r_2, 1, h, eta, noise_sampler, sigma_s_2, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x
