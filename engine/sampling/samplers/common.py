"""Pieces shared by the samplers: the denoiser protocol, ODE derivative, ancestral step split, noise samplers.

The denoiser protocol
---------------------
Every sampler takes ``model(x, sigma, **extra_args) -> denoised``: ``x`` is the noisy latent in the VE view
(``x0 + sigma * eps``), ``sigma`` a (batch,) tensor, the result the x0 estimate with guidance applied.
``extra_args["seed"]`` (int or None) seeds the samplers' own noise; every ``extra_args`` entry is also passed
on to the model as a keyword argument, so models take ``**kwargs``. Two optional attributes widen it:

- ``model.model_sampling``: the ``ModelSampling`` of the model. Samplers that need it (lcm, sa_solver, and
  the half-log-SNR samplers) fall back to SD's discrete eps schedule when it is absent. On rectified-flow
  model sampling (``prediction == "flow"``) the ancestral samplers switch to flow-path steps and the
  half-log-SNR samplers start just below sigma 1 (``offset_first_sigma_for_snr``), as in ComfyUI.
- ``model.denoise_with_uncond(x, sigma, **extra_args) -> (denoised, uncond_denoised)``: the guided result and
  the unconditional prediction of the same call, the uncond computed even at cfg 1. The ``*_cfg_pp`` samplers
  use it (CFG++ steps along the unconditional prediction). Without it the model is taken as unguided, so the
  uncond is the denoised result itself.

Interrupting: samplers never poll for cancellation. The callback runs once per step (after that step's first
model call) and may raise to abort the run; the exception propagates to the caller.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torchsde

from ..model_sampling import ModelSampling, discrete_model_sampling

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v[(...,) + (None,) * (ndim - v.ndim)]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative dx/dsigma for a denoiser output."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """Split a step into a deterministic descent to ``sigma_down`` and fresh noise of std ``sigma_up``.

    sigma_down^2 + sigma_up^2 = sigma_to^2; ``eta`` scales the stochastic part (0 = deterministic).
    """
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def flow_ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """``ancestral_step`` for rectified flow, where x = (1 - sigma) x0 + sigma noise.

    Returns ``(sigma_down, rescale, sigma_up)``: interpolate towards x0 down to ``sigma_down`` (``eta`` 0 = straight
    to ``sigma_to``), multiply by ``rescale`` = (1 - sigma_to) / (1 - sigma_down) to restore the signal level of
    ``sigma_to``, then add noise of std ``sigma_up`` to reach its noise level.
    """
    sigma_down = sigma_to * (1 + (sigma_to / sigma_from - 1) * eta)
    alpha_to, alpha_down = 1 - sigma_to, 1 - sigma_down
    if not eta:  # skip the square root of a rounding residue, which may be negative
        return sigma_down, alpha_to / alpha_down, 0.0
    sigma_up = (sigma_to ** 2 - sigma_down ** 2 * alpha_to ** 2 / alpha_down ** 2) ** 0.5
    return sigma_down, alpha_to / alpha_down, sigma_up


def flow_interpolate(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_to) -> torch.Tensor:
    """Move x along the straight flow path towards ``denoised`` from ``sigma`` to ``sigma_to``."""
    ratio = sigma_to / sigma
    return ratio * x + (1 - ratio) * denoised


def step_callback(callback, x, i, sigma, denoised) -> None:
    """Report step ``i`` (k-diffusion's dict; sigma_hat equals sigma as no sampler here adds churn)."""
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


@lru_cache(maxsize=1)
def _default_model_sampling() -> ModelSampling:
    return discrete_model_sampling()


def model_sampling_of(model) -> ModelSampling:
    ms = getattr(model, "model_sampling", None)
    return ms if ms is not None else _default_model_sampling()


def is_rectified_flow(model) -> bool:
    return model_sampling_of(model).prediction == "flow"


def offset_first_sigma_for_snr(sigmas: torch.Tensor, ms: ModelSampling, percent: float = 1e-4) -> torch.Tensor:
    """A rectified-flow schedule starting at sigma 1 (pure noise) has an infinite half-log-SNR there; the
    log-SNR samplers start instead at the sigma ``percent`` into the denoising, as ComfyUI does."""
    if len(sigmas) > 1 and ms.prediction == "flow" and sigmas[0] >= 1:
        sigmas = sigmas.clone()
        sigmas[0] = ms.percent_to_sigma(percent)
    return sigmas


def denoise_with_uncond(model, x: torch.Tensor, sigma: torch.Tensor, extra_args: dict):
    """(guided denoised, unconditional denoised) for one model call; see the module docstring."""
    both = getattr(model, "denoise_with_uncond", None)
    if both is None:
        denoised = model(x, sigma, **extra_args)
        return denoised, denoised
    return both(x, sigma, **extra_args)


# -- noise samplers: (sigma, sigma_next) -> unit-variance noise shaped like x ---------------------------------
def default_noise_sampler(x: torch.Tensor, seed: int | None = None) -> NoiseSampler:
    """Independent Gaussian draws from one generator on x's device, seeded with the sampling seed."""
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)

    def sample(sigma, sigma_next):
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)
    return sample


def seeded_noise_sampler(x: torch.Tensor, extra_args: dict, noise_sampler: NoiseSampler | None) -> NoiseSampler:
    """The caller's noise sampler, else the default one seeded with ``extra_args["seed"]``."""
    return default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler


class BrownianTreeNoiseSampler:
    """Noise from a Brownian motion W(sigma): the increment over [sigma_next, sigma], normalised to unit variance.

    Querying sub-intervals of a step gives noise consistent with the whole step, which the SDE samplers rely
    on. ``cpu=True`` keeps the tree on the CPU so results do not depend on the accelerator (ComfyUI's default
    for the non-``_gpu`` samplers).
    """

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seed: int | None = None, cpu: bool = False):
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self._sign = 1
        if not t0 < t1:
            t0, t1, self._sign = t1, t0, -1
        if seed is None:
            seed = torch.randint(0, 2 ** 63 - 1, ()).item()
        w0 = torch.zeros_like(x)
        self._cpu = cpu
        if cpu:
            t0, w0, t1 = t0.detach().cpu(), w0.detach().cpu(), t1.detach().cpu()
        self._tree = torchsde.BrownianTree(t0, w0, t1, entropy=seed)

    def _increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        sign = self._sign
        if not t0 < t1:
            t0, t1, sign = t1, t0, -sign
        device, dtype = t0.device, t0.dtype
        if self._cpu:
            t0, t1 = t0.detach().cpu().float(), t1.detach().cpu().float()
        return self._tree(t0, t1).to(device=device, dtype=dtype) * sign

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        return self._increment(t0, t1) / (t1 - t0).abs().sqrt()


def brownian_noise_sampler(x: torch.Tensor, sigmas: torch.Tensor, seed: int | None, cpu: bool) -> NoiseSampler:
    """A Brownian tree spanning the positive sigmas of a schedule."""
    return BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, cpu=cpu)
