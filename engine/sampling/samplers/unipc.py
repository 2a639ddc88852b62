"""UniPC (Zhao et al. 2023, arXiv 2302.04867): multistep predictor-corrector, data prediction, B(h) variants.

It runs in the VP parameterisation: the state is x / sqrt(1 + sigma^2), alpha and sigma_vp come from sigma
through their log forms, and the x0 estimate goes through an eps round trip, all as ComfyUI does so float32
results agree. A final sigma of 0 is replaced by 0.001 (lambda would be infinite) and the result is divided
by that level's alpha, so the output keeps a trace of noise at sigma 0.001, exactly as upstream.

The callback gets the VP-space state as ``x``; a 1-step schedule performs no update at all (upstream too).
"""
from __future__ import annotations

import torch

from .common import append_dims


def _log_alpha(sigma):
    return 0.5 * torch.log(1 / ((sigma * sigma) + 1))


def _alpha(sigma):
    return torch.exp(_log_alpha(sigma))


def _std(sigma):
    return torch.sqrt(1.0 - torch.exp(2.0 * _log_alpha(sigma)))


def _lambda(sigma):
    log_alpha = _log_alpha(sigma)
    return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


class _DataPrediction:
    """The model as a VP data predictor: VP state in, x0 out."""

    def __init__(self, model, extra_args: dict):
        self.model = model
        self.extra_args = extra_args

    def __call__(self, x_vp: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma_in = sigma * x_vp.new_ones([x_vp.shape[0]])
        s = append_dims(sigma_in, x_vp.ndim)
        x_ve = x_vp * ((s ** 2 + 1.0) ** 0.5)
        eps = (x_ve - self.model(x_ve, sigma_in, **self.extra_args)) / s
        return (x_vp - append_dims(_std(sigma_in), x_vp.ndim) * eps) / append_dims(_alpha(sigma_in), x_vp.ndim)


def _bh_update(x0_fn, x, models, sigmas_prev, sigma_t, order, use_corrector, variant):
    """One UniPC step from sigmas_prev[-1] to sigma_t using the last ``order`` x0 estimates.

    Returns the new state and the model's x0 at the predicted point (None without corrector), which the
    next step reuses instead of evaluating the corrected state.
    """
    lambda_0 = _lambda(sigmas_prev[-1])
    h = _lambda(sigma_t) - lambda_0
    model_0 = models[-1]
    rks, diffs = [], []
    for k in range(1, order):
        rk = (_lambda(sigmas_prev[-(k + 1)]) - lambda_0) / h
        rks.append(rk)
        diffs.append((models[-(k + 1)] - model_0) / rk)
    rks = torch.stack(rks + [torch.ones_like(h)])

    hh = -h  # data prediction integrates in -lambda
    h_phi_1 = torch.expm1(hh)
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, b = [], []
    h_phi_k, factorial = h_phi_1 / hh - 1, 1
    for k in range(1, order + 1):
        rows.append(torch.pow(rks, k - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    r_matrix, b = torch.stack(rows), torch.stack(b)

    alpha_t = _alpha(sigma_t)
    x_base = (_std(sigma_t) / _std(sigmas_prev[-1])) * x - (alpha_t * h_phi_1) * model_0
    stacked = torch.stack(diffs, dim=1) if diffs else None
    x_t = x_base
    if stacked is not None:
        rhos_p = torch.tensor([0.5], device=x.device) if order == 2 else torch.linalg.solve(r_matrix[:-1, :-1], b[:-1])
        x_t = x_base - (alpha_t * b_h) * torch.tensordot(stacked, rhos_p, dims=([1], [0]))
    if not use_corrector:
        return x_t, None
    rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(r_matrix, b)
    model_t = x0_fn(x_t, sigma_t)
    correction = rhos_c[-1] * (model_t - model_0)
    if stacked is not None:
        correction = torch.tensordot(stacked, rhos_c[:-1], dims=([1], [0])) + correction
    return x_base - (alpha_t * b_h) * correction, model_t


@torch.no_grad()
def sample_uni_pc(model, x, sigmas, extra_args=None, callback=None, disable=None, variant="bh1"):
    """UniPC of order up to 3 with lower orders at both ends; ``variant`` "bh1" or "bh2"."""
    extra_args = {} if extra_args is None else extra_args
    x0_fn = _DataPrediction(model, extra_args)
    ts = sigmas.clone()
    if sigmas[-1] == 0:
        ts[-1] = 0.001
    steps = len(ts) - 1
    order = min(3, len(ts) - 2)
    x = x / torch.sqrt(1.0 + ts[0] ** 2.0)

    def report(i):
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": models[-1]})

    if steps >= 1:
        models, sigmas_prev = [x0_fn(x, ts[0])], [ts[0]]
        report(0)
    for k in range(1, steps + 1):
        # Warm-up steps use every estimate so far; later ones cap at ``order`` and taper off at the end.
        step_order = k if k < order else min(order, steps + 1 - k)
        x, model_x = _bh_update(x0_fn, x, models, sigmas_prev, ts[k], step_order, k != steps, variant)
        if k < steps:
            models, sigmas_prev = (models + [model_x])[-order:], (sigmas_prev + [ts[k]])[-order:]
        if k < steps - 1:
            report(k)
        elif k == steps:
            report(steps - 1)
    return x / _alpha(ts[-1])


@torch.no_grad()
def sample_uni_pc_bh2(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return sample_uni_pc(model, x, sigmas, extra_args, callback, disable, variant="bh2")
