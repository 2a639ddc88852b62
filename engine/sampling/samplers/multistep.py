"""Linear multistep samplers: LMS, iPNDM (fixed and variable step), DEIS, RES multistep, gradient estimation.

They reuse slopes (or x0 estimates) from earlier steps instead of extra model calls within a step.
"""
from __future__ import annotations

import torch
from scipy import integrate

from .common import ancestral_step, denoise_with_uncond, seeded_noise_sampler, step_callback, to_d


def _push(history: list, item, capacity: int) -> None:
    """Append to a bounded history, dropping the oldest entry when full."""
    history.append(item)
    if len(history) > capacity:
        history.pop(0)


# -- LMS ------------------------------------------------------------------------------------------------------
def lms_coefficient(order: int, sigmas, i: int, j: int) -> float:
    """Integral over [sigma_i, sigma_{i+1}] of the Lagrange basis polynomial of point i - j (of ``order`` points)."""
    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")

    def basis(tau):
        prod = 1.0
        for k in range(order):
            if k != j:
                prod *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
        return prod
    return integrate.quad(basis, sigmas[i], sigmas[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, disable=None, order=4):
    """Linear multistep in sigma over the last ``order`` ODE slopes; the final step jumps to the x0 estimate."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().numpy()
    slopes = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _push(slopes, to_d(x, sigmas[i], denoised), order)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            cur_order = min(i + 1, order)
            coeffs = [lms_coefficient(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
            x = x + sum(c * d for c, d in zip(coeffs, reversed(slopes)))
    return x


# -- iPNDM ----------------------------------------------------------------------------------------------------
def _ipndm_fixed_update(dt, d, past):
    """Adams-Bashforth with fixed-step weights; ``past`` holds earlier slopes, newest last."""
    if not past:
        return dt * d
    if len(past) == 1:
        return dt * (3 * d - past[-1]) / 2
    if len(past) == 2:
        return dt * (23 * d - 16 * past[-1] + 5 * past[-2]) / 12
    return dt * (55 * d - 59 * past[-1] + 37 * past[-2] - 9 * past[-3]) / 24


def _ipndm_variable_update(dt, d, past, sigmas, i):
    """Adams-Bashforth with weights for the actual (non-uniform) step sizes."""
    if not past:
        return dt * d
    h_n = sigmas[i + 1] - sigmas[i]
    h_n_1 = sigmas[i] - sigmas[i - 1]
    c1 = (2 + (h_n / h_n_1)) / 2
    c2 = -(h_n / h_n_1) / 2
    if len(past) == 1:
        return dt * (c1 * d + c2 * past[-1])
    h_n_2 = sigmas[i - 1] - sigmas[i - 2]
    temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
    if len(past) == 2:
        c1 = c1 + temp1
        c2 = c2 - (1 + h_n_1 / h_n_2) * temp1
        c3 = temp1 * h_n_1 / h_n_2
        return dt * (c1 * d + c2 * past[-1] + c3 * past[-2])
    h_n_3 = sigmas[i - 2] - sigmas[i - 3]
    ratio = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))
    temp2 = (((1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (6 * (h_n + h_n_1 + h_n_2)))
             * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3)))
    c1 = c1 + temp1 + temp2
    c2 = c2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + (h_n_1 / h_n_2) + ratio) * temp2
    c3 = temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + ratio * (1 + h_n_2 / h_n_3)) * temp2
    c4 = -temp2 * ratio * h_n_1 / h_n_2
    return dt * (c1 * d + c2 * past[-1] + c3 * past[-2] + c4 * past[-3])


def _ipndm(model, x, sigmas, extra_args, callback, max_order, update):
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    past = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x_next = denoised
        else:
            x_next = x + update(sigmas[i + 1] - sigmas[i], d, past, i)
        _push(past, d, max_order - 1)
        x = x_next
    return x


@torch.no_grad()
def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """Improved PNDM (Zhang & Chen 2023): Adams-Bashforth up to 4th order, warming up from Euler."""
    return _ipndm(model, x, sigmas, extra_args, callback, max_order,
                  lambda dt, d, past, i: _ipndm_fixed_update(dt, d, past))


@torch.no_grad()
def sample_ipndm_v(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """iPNDM with variable-step Adams-Bashforth weights."""
    return _ipndm(model, x, sigmas, extra_args, callback, max_order,
                  lambda dt, d, past, i: _ipndm_variable_update(dt, d, past, sigmas, i))


# -- DEIS -----------------------------------------------------------------------------------------------------
def _vp_time(sigmas: torch.Tensor, epsilon_s=1e-3, sigma_min=0.002, sigma_max=80.0):
    """Map sigmas to the time of the VP-SDE with linear beta that spans EDM's default range (0.002..80).

    Returns (t, beta_0, beta_1): alpha_bar(t) = exp(-t^2 (beta_1 - beta_0) / 2 - t beta_0).
    """
    log_min = torch.log(torch.tensor(sigma_min) ** 2 + 1)
    log_max = torch.log(torch.tensor(sigma_max) ** 2 + 1)
    beta_d = 2 * (log_min / epsilon_s - log_max) / (epsilon_s - 1)
    beta_min = log_max - 0.5 * beta_d
    sigmas = sigmas.detach().cpu()
    t = ((beta_min ** 2 + 2 * beta_d * (sigmas ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    return t, beta_min, beta_d + beta_min


def deis_coefficients(sigmas: torch.Tensor, max_order: int, n_points: int = 10000) -> list[list[torch.Tensor]]:
    """Per step, the DEIS "tAB" weights of the current and previous slopes (empty for first-order steps).

    Each weight integrates the exponential-integrator kernel times a Lagrange basis polynomial in VP time,
    by a Riemann sum over ``n_points`` points.
    """
    t_steps, beta_0, beta_1 = _vp_time(sigmas)
    coefficients = []
    for i in range(len(t_steps) - 1):
        order = min(i + 1, max_order)
        if order == 1:
            coefficients.append([])
            continue
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        taus = torch.linspace(t_cur, t_next, n_points)
        dtau = (t_next - t_cur) / n_points
        alpha = torch.exp(-0.5 * taus ** 2 * (beta_1 - beta_0) - taus * beta_0)
        d_log_alpha = -taus * (beta_1 - beta_0) - beta_0
        kernel = -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))
        nodes = t_steps[[i - k for k in range(order)]]
        step = []
        for j in range(order):
            basis = 1
            for k in range(order):
                if k != j:
                    basis = basis * ((taus - nodes[k]) / (nodes[j] - nodes[k]))
            step.append(torch.sum(kernel * basis) * dtau)
        coefficients.append(step)
    return coefficients


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=3):
    """DEIS (Zhang & Chen 2023) multistep with numerically integrated coefficients; Euler to sigma 0."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    coefficients = deis_coefficients(sigmas, max_order)
    past = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x, i, sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] <= 0 or not past:
            x_next = x + (sigmas[i + 1] - sigmas[i]) * d
        else:
            weights = coefficients[i]
            x_next = x + weights[0] * d
            for w, old in zip(weights[1:], reversed(past)):
                x_next = x_next + w * old
        _push(past, d, max_order - 1)
        x = x_next
    return x


# -- RES multistep --------------------------------------------------------------------------------------------
def _phi_1(t):
    return torch.expm1(t) / t


def _phi_2(t):
    return (_phi_1(t) - 1.0) / t


def _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta, cfg_pp):
    """Second-order RES multistep (arXiv 2308.02157) with optional ancestral noise and CFG++."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    t_fn = lambda sigma: sigma.log().neg()
    old_sigma_down, old_denoised = None, None
    for i in range(len(sigmas) - 1):
        if cfg_pp:
            denoised, uncond = denoise_with_uncond(model, x, sigmas[i] * s_in, extra_args)
        else:
            denoised = uncond = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        step_callback(callback, x, i, sigmas[i], denoised)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old, t_next, t_prev = t_fn(sigmas[i]), t_fn(old_sigma_down), t_fn(sigma_down), t_fn(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1_val, phi2_val = _phi_1(-h), _phi_2(-h)
            b1 = torch.nan_to_num(phi1_val - phi2_val / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2_val / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
            x = torch.exp(-h) * x + h * (b1 * uncond + b2 * old_denoised)
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old_denoised, old_sigma_down = uncond, sigma_down
    return x


@torch.no_grad()
def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                         noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=0.0, cfg_pp=False)


@torch.no_grad()
def sample_res_multistep_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                                noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=0.0, cfg_pp=True)


@torch.no_grad()
def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                   s_noise=1.0, noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=eta, cfg_pp=False)


@torch.no_grad()
def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                          s_noise=1.0, noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=eta, cfg_pp=True)


# -- gradient estimation --------------------------------------------------------------------------------------
@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, disable=None, ge_gamma=2.0,
                               cfg_pp=False):
    """Euler plus a correction from the change in slope between steps (Permenter & Yuan, "gradient estimation")."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_d = None
    for i in range(len(sigmas) - 1):
        if cfg_pp:
            denoised, uncond = denoise_with_uncond(model, x, sigmas[i] * s_in, extra_args)
        else:
            denoised = uncond = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], uncond)
        step_callback(callback, x, i, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


@torch.no_grad()
def sample_gradient_estimation_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                      ge_gamma=2.0):
    return sample_gradient_estimation(model, x, sigmas, extra_args, callback, disable, ge_gamma, cfg_pp=True)
