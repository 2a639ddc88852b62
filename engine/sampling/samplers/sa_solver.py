"""SA-Solver: stochastic Adams predictor-corrector (Xue et al., NeurIPS 2023, arXiv 2309.05019), data prediction.

The SDE's stochasticity tau is 1 inside a middle band of sigmas (by default between 20% and 80% of the
denoising) and 0 outside, where the solver is a deterministic multistep ODE solver.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .common import model_sampling_of, offset_first_sigma_for_snr, seeded_noise_sampler, step_callback


def exponential_integrals(s: torch.Tensor, t: torch.Tensor, order: int, tau: float) -> torch.Tensor:
    """(1 + tau^2) * integral_s^t exp((1 + tau^2) x) x^p dx for p = 0..order-1, with exp((1 + tau^2) t) factored out.

    Integration by parts turns the integrals into a lower-triangular combination of the boundary terms
    x^p exp(...) / (1 + tau^2); the combination weights are p!/q! / (1 + tau^2)^(p - q) with alternating sign.
    """
    tau_mul = 1 + tau ** 2
    h = t - s
    p = torch.arange(order, dtype=s.dtype, device=s.device)
    boundary = t ** p - s ** p * (-tau_mul * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    log_factorial = (p + 1).lgamma()
    log_weights = log_factorial.unsqueeze(1) - log_factorial.unsqueeze(0)
    if tau > 0:
        log_weights = log_weights - depth * math.log(tau_mul)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0)
    return (log_weights.exp() * signs).tril() @ boundary


def _simple_order_2_coefficients(sigma_next, lambdas, lambda_s, lambda_t, tau, is_corrector):
    """The paper's simplified two-point weights (its Appendix D)."""
    tau_mul = 1 + tau ** 2
    h = lambda_t - lambda_s
    alpha_t = sigma_next * lambda_t.exp()
    if is_corrector:
        b_1 = alpha_t * (0.5 * tau_mul * h)
        b_2 = alpha_t * (-h * tau_mul).expm1().neg() - b_1
    else:
        b_2 = alpha_t * (0.5 * tau_mul * h ** 2) / (lambdas[-2] - lambda_s)
        b_1 = alpha_t * (-h * tau_mul).expm1().neg() - b_2
    return torch.stack([b_2, b_1])


def adams_coefficients(sigma_next: torch.Tensor, lambdas: torch.Tensor, lambda_s: torch.Tensor,
                       lambda_t: torch.Tensor, tau: float, simple_order_2: bool = False,
                       is_corrector: bool = False) -> torch.Tensor:
    """Weights b_i of the x0 estimates at ``lambdas`` for a step from lambda_s to lambda_t (eqs. 15 and 18).

    Integrating the Lagrange interpolant of the estimates: solve V^T b = integrals, V the Vandermonde matrix.
    """
    order = lambdas.shape[0]
    if simple_order_2 and order == 2:
        return _simple_order_2_coefficients(sigma_next, lambdas, lambda_s, lambda_t, tau, is_corrector)
    integrals = exponential_integrals(lambda_s, lambda_t, order, tau)
    vandermonde_t = torch.vander(lambdas, order, increasing=True).T
    return sigma_next * lambda_t.exp() * torch.linalg.solve(vandermonde_t, integrals)


def tau_interval(start_sigma: float, end_sigma: float, eta: float = 1.0) -> Callable[[torch.Tensor], float]:
    """tau = eta for sigmas within [end_sigma, start_sigma], else 0."""
    def tau(sigma) -> float:
        if eta <= 0:
            return 0.0
        sigma = sigma.item() if isinstance(sigma, torch.Tensor) else sigma
        return eta if start_sigma >= sigma >= end_sigma else 0.0
    return tau


def _weighted_sum(estimates: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    return torch.tensordot(torch.stack(estimates, dim=1), weights, dims=([1], [0]))


@torch.no_grad()
def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, disable=None, tau_func=None, s_noise=1.0,
                     noise_sampler=None, predictor_order=3, corrector_order=4, use_pece=False,
                     simple_order_2=False):
    """SA-Solver predictor-corrector; ``use_pece`` re-evaluates the model on the corrected state."""
    if len(sigmas) <= 1:
        return x
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = seeded_noise_sampler(x, extra_args, noise_sampler)
    ms = model_sampling_of(model)
    sigmas = offset_first_sigma_for_snr(sigmas, ms)
    s_in = x.new_ones([x.shape[0]])
    lambdas = ms.half_log_snr(sigmas)
    if tau_func is None:
        tau_func = tau_interval(ms.percent_to_sigma(0.2), ms.percent_to_sigma(0.8), eta=1.0)

    history = max(predictor_order, corrector_order)
    x_pred = x
    h, tau_t, noise = 0.0, 0.0, 0.0
    estimates: list[torch.Tensor] = []
    # Near the end of a schedule that reaches 0 the orders are lowered for stability.
    lower_order_to_end = sigmas[-1].item() == 0

    for i in range(len(sigmas) - 1):
        denoised = model(x_pred, sigmas[i] * s_in, **extra_args)
        step_callback(callback, x_pred, i, sigmas[i], denoised)
        estimates = (estimates + [denoised])[-history:]

        p_order = min(predictor_order, len(estimates))
        c_order = 0 if i == 0 or (sigmas[i + 1] == 0 and not use_pece) else min(corrector_order, len(estimates))
        if lower_order_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)

        # Corrector: redo the last step with the new estimate included.
        if c_order == 0:
            x = x_pred
        else:
            b = adams_coefficients(sigmas[i], lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i], tau_t,
                                   simple_order_2, is_corrector=True)
            x = sigmas[i] / sigmas[i - 1] * (-(tau_t ** 2) * h).exp() * x + _weighted_sum(estimates[-c_order:], b)
            if tau_t > 0 and s_noise > 0:
                x = x + noise  # the predictor's noise, shared so both see the same Brownian path
            if use_pece:
                denoised = model(x, sigmas[i] * s_in, **extra_args)
                estimates[-1] = denoised

        # Predictor: step to the next sigma from the estimates so far.
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            tau_t = tau_func(sigmas[i + 1])
            b = adams_coefficients(sigmas[i + 1], lambdas[i - p_order + 1:i + 1], lambdas[i], lambdas[i + 1], tau_t,
                                   simple_order_2, is_corrector=False)
            h = lambdas[i + 1] - lambdas[i]
            x_pred = sigmas[i + 1] / sigmas[i] * (-(tau_t ** 2) * h).exp() * x + _weighted_sum(estimates[-p_order:], b)
            if tau_t > 0 and s_noise > 0:
                noise = (noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * tau_t ** 2 * h).expm1().neg().sqrt() * s_noise)
                x_pred = x_pred + noise
    return x


@torch.no_grad()
def sample_sa_solver_pece(model, x, sigmas, extra_args=None, callback=None, disable=None, tau_func=None,
                          s_noise=1.0, noise_sampler=None, predictor_order=3, corrector_order=4,
                          simple_order_2=False):
    """SA-Solver in PECE mode (predict, evaluate, correct, evaluate)."""
    return sample_sa_solver(model, x, sigmas, extra_args, callback, disable, tau_func, s_noise, noise_sampler,
                            predictor_order, corrector_order, use_pece=True, simple_order_2=simple_order_2)
