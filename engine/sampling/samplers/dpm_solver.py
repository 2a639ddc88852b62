"""DPM-Solver (Lu et al. 2022, arXiv 2206.00927) in its fixed-step "fast" and adaptive forms.

These ignore the schedule's interior sigmas: they integrate in t = -log(sigma) from sigmas[0] down to the
smallest positive sigma and stop there (no final jump to 0), as ComfyUI's dpm_fast / dpm_adaptive do.
"""
from __future__ import annotations

import math

import torch

from .common import ancestral_step, seeded_noise_sampler


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return -sigma.log()


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


class _EpsSteps:
    """DPM-Solver 1/2/3 steps on the model's noise prediction.

    Each step gets a fresh ``cache`` dict so the low- and high-order estimates of one adaptive step share
    the evaluations they have in common (same point, same time) instead of calling the model again.
    """

    def __init__(self, model, extra_args: dict):
        self.model = model
        self.extra_args = extra_args

    def eps(self, cache: dict, key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            sigma = _sigma(t) * x.new_ones([x.shape[0]])
            cache[key] = (x - self.model(x, sigma, **self.extra_args)) / _sigma(t)
        return cache[key]

    def first_order(self, cache, x, t, t_next):
        h = t_next - t
        return x - _sigma(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def second_order(self, cache, x, t, t_next, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def third_order(self, cache, x, t, t_next, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - _sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - _sigma(s2) * (r2 * h).expm1() * eps
              - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def step(self, order: int, cache, x, t, t_next):
        return (self.first_order, self.second_order, self.third_order)[order - 1](cache, x, t, t_next)


def _ancestral_target(t, t_next, t_end, eta):
    """Where the deterministic part of a step lands, and the noise std that tops it back up to t_next."""
    if not eta:
        return t_next, 0.0
    sigma_down, _ = ancestral_step(_sigma(t), _sigma(t_next), eta)
    t_down = torch.minimum(t_end, _t(sigma_down))
    return t_down, (_sigma(t_next) ** 2 - _sigma(t_down) ** 2) ** 0.5


def _positive_range(sigmas: torch.Tensor):
    """(sigma_min, sigma_max) of a schedule, skipping a final 0."""
    sigma_min = sigmas[-2] if sigmas[-1] == 0 else sigmas[-1]
    return sigma_min, sigmas[0]


def _fast_orders(nfe: int) -> list[int]:
    """Spend ``nfe`` model calls as third-order steps, with one lower-order step absorbing the remainder."""
    m = math.floor(nfe / 3) + 1
    if nfe % 3 == 0:
        return [3] * (m - 2) + [2, 1]
    return [3] * (m - 1) + [nfe % 3]


@torch.no_grad()
def sample_dpm_fast(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                    noise_sampler=None):
    """DPM-Solver-fast: ``len(sigmas) - 1`` model calls in uniform log-sigma steps of order 3 (then 2, 1)."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    sigma_min, sigma_max = _positive_range(sigmas)
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    solver = _EpsSteps(model, extra_args)
    t_start, t_end = _t(torch.as_tensor(sigma_max)), _t(torch.as_tensor(sigma_min))
    orders = _fast_orders(len(sigmas) - 1)
    ts = torch.linspace(t_start, t_end, len(orders) + 1, device=x.device)
    for i, order in enumerate(orders):
        cache = {}
        t, t_next = ts[i], ts[i + 1]
        t_down, sigma_up = _ancestral_target(t, t_next, t_end, eta)
        denoised = x - _sigma(t) * solver.eps(cache, "eps", x, t)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": _sigma(t), "sigma_hat": _sigma(t), "denoised": denoised})
        x = solver.step(order, cache, x, t, t_down)
        if eta:
            x = x + sigma_up * s_noise * noise_sampler(_sigma(t), _sigma(t_next))
    return x


class _PIDStepSizeController:
    """PID control of the step size h from the normalised local error (accept when the factor is large enough)."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose_step(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)  # soft limiter
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigmas, extra_args=None, callback=None, disable=None, order=3, rtol=0.05,
                        atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0,
                        s_noise=1.0, noise_sampler=None):
    """Adaptive DPM-Solver-12 / -23: embedded low/high order pair, PID step control on their difference.

    The callback runs once per attempted step (rejected ones included), ``i`` counting attempts.
    """
    if len(sigmas) <= 1:
        return x
    if order not in {2, 3}:
        raise ValueError("order should be 2 or 3")
    extra_args = {} if extra_args is None else extra_args
    sigma_min, sigma_max = _positive_range(sigmas)
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    solver = _EpsSteps(model, extra_args)
    t_start, t_end = _t(torch.as_tensor(sigma_max)), _t(torch.as_tensor(sigma_min))
    forward = t_end > t_start
    if not forward and eta:
        raise ValueError("eta must be 0 for reverse sampling")
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    pid = _PIDStepSizeController(abs(h_init) * (1 if forward else -1), pcoeff, icoeff, dcoeff,
                                 1.5 if eta else order, accept_safety)
    s, x_prev, attempts = t_start, x, 0
    while s < t_end - 1e-5 if forward else s > t_end + 1e-5:
        cache = {}
        t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
        t_down, sigma_up = _ancestral_target(s, t, t_end, eta)
        denoised = x - _sigma(s) * solver.eps(cache, "eps", x, s)
        if order == 2:
            x_low = solver.first_order(cache, x, s, t_down)
            x_high = solver.second_order(cache, x, s, t_down)
        else:
            x_low = solver.second_order(cache, x, s, t_down, r1=1 / 3)
            x_high = solver.third_order(cache, x, s, t_down)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if pid.propose_step(error):
            x_prev = x_low
            x = x_high
            if eta:
                x = x + sigma_up * s_noise * noise_sampler(_sigma(s), _sigma(t))
            s = t
        attempts += 1
        if callback is not None:
            callback({"x": x, "i": attempts - 1, "sigma": _sigma(s), "sigma_hat": _sigma(s), "denoised": denoised})
    return x
