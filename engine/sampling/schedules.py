"""Noise schedules: the sigma sequences a sampler walks, as ComfyUI's KSampler computes them.

Every scheduler in ``SCHEDULERS`` is ``(model_sampling, steps) -> sigmas``: a float32 CPU tensor, descending,
ending in 0. Most have ``steps + 1`` entries; ``beta`` drops repeated timesteps and ``ddim_uniform`` strides the
table, so those two can be shorter or longer, exactly as upstream.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy
import scipy.stats
import torch

from . import gits
from .model_sampling import ModelSampling

Scheduler = Callable[[ModelSampling, int], torch.Tensor]


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


# -- k-diffusion style schedules: (n, sigma_min, sigma_max) -> n + 1 sigmas ----------------------------------
def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device=None) -> torch.Tensor:
    """Karras et al. (2022): uniform steps in sigma^(1/rho)."""
    ramp = torch.linspace(0, 1, n, device=device)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float, device=None) -> torch.Tensor:
    """Uniform steps in log-sigma."""
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, device=device).exp())


def get_sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0,
                               device=None) -> torch.Tensor:
    """Log-sigma falling as a polynomial of degree `rho` in the step (exponential for rho 1)."""
    ramp = torch.linspace(1, 0, n, device=device) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def get_sigmas_vp(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3,
                  device=None) -> torch.Tensor:
    """The continuous variance-preserving schedule of Song et al. (2021), from t = 1 down to eps_s."""
    t = torch.linspace(1, eps_s, n, device=device)
    return append_zero(torch.sqrt(torch.special.expm1(beta_d * t ** 2 / 2 + beta_min * t)))


def get_sigmas_laplace(n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5,
                       device=None) -> torch.Tensor:
    """Log-sigma spaced by the Laplace distribution's quantiles around `mu` (Tiankai et al. 2024), clamped to the
    range; ends at sigma_min, not zero, as upstream's."""
    x = torch.linspace(0, 1, n, device=device)
    log_sigma = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.clamp(torch.exp(log_sigma), min=sigma_min, max=sigma_max)


# Published noise levels, highest first: Align Your Steps (Sabour et al. 2024) for SD1 / SDXL / SVD and Optimal
# Steps (Pei et al. 2025) for flow models; other step counts resample them log-linearly.
NOISE_LEVELS = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
            0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
             0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
    "FLUX": [0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808, 0.001],
    "Wan": [1.0, 0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98, 0.975, 0.973, 0.968, 0.96, 0.946, 0.927, 0.902,
            0.864, 0.776, 0.539, 0.208, 0.001],
    "Chroma": [0.992, 0.99, 0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943, 0.931, 0.917, 0.9, 0.881,
               0.858, 0.832, 0.802, 0.769, 0.731, 0.69, 0.646, 0.599, 0.55, 0.501, 0.451, 0.402, 0.355, 0.311,
               0.27, 0.232, 0.199, 0.169, 0.143, 0.12, 0.101, 0.084, 0.07, 0.058, 0.048, 0.001],
}


def resampled_sigmas(levels: list[float], steps: int, denoise: float = 1.0) -> torch.Tensor:
    """`steps` steps down the noise `levels` (resampled log-linearly when they are not steps + 1), the last
    `denoise` of them, ending at 0."""
    if denoise <= 0.0:
        return torch.FloatTensor([])
    kept = round(steps * denoise) if denoise < 1.0 else steps
    levels = numpy.array(levels)
    if steps + 1 != len(levels):
        ascending = numpy.log(levels[::-1])
        levels = numpy.exp(numpy.interp(numpy.linspace(0, 1, steps + 1), numpy.linspace(0, 1, len(levels)),
                                        ascending))[::-1]
    levels = levels[-(kept + 1):].copy()
    levels[-1] = 0
    return torch.FloatTensor(levels)


def tabulated_sigmas(model_type: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """resampled_sigmas of NOISE_LEVELS[model_type]."""
    return resampled_sigmas(NOISE_LEVELS[model_type], steps, denoise)


def gits_sigmas(coeff: float, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """GITS's schedule for `coeff` (0.80..1.50 by 0.05): the one searched for `steps`, or beyond 20 steps the
    20-step one resampled."""
    return resampled_sigmas(gits.NOISE_LEVELS[round(coeff, 2)][min(steps, 20) - 2], steps, denoise)


def get_sigmas_kl_optimal(n: int, sigma_min: float, sigma_max: float, device=None) -> torch.Tensor:
    """Uniform steps in arctan(sigma) (the KL-optimal schedule of AUTOMATIC1111 PR 15608)."""
    frac = torch.arange(n, dtype=torch.float, device=device).div_(n - 1)
    sigmas = frac.new_zeros(n + 1)
    sigmas[:-1] = (frac * math.atan(sigma_min) + (1 - frac) * math.atan(sigma_max)).tan_()
    return sigmas


def _from_range(schedule: Callable[[int, float, float], torch.Tensor]) -> Scheduler:
    """Adapt an (n, sigma_min, sigma_max) schedule to the model's sigma range."""
    def scheduler(ms: ModelSampling, steps: int) -> torch.Tensor:
        return schedule(steps, float(ms.sigma_min), float(ms.sigma_max))
    scheduler.__name__ = schedule.__name__
    return scheduler


# -- schedules that read the model's sigma table ---------------------------------------------------------------
def simple_schedule(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Evenly strided entries of the sigma table, from the top."""
    stride = len(ms.sigmas) / steps
    picked = [float(ms.sigmas[-(1 + int(k * stride))]) for k in range(steps)]
    return torch.FloatTensor(picked + [0.0])


def ddim_uniform_schedule(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Every ``len // steps``-th table entry from index 1 up, reversed (DDIM's "uniform" discretisation)."""
    if math.isclose(float(ms.sigmas[1]), 0, abs_tol=0.00001):
        # A table that already reaches 0 supplies the final zero itself.
        steps += 1
        tail = []
    else:
        tail = [0.0]
    stride = max(len(ms.sigmas) // steps, 1)
    picked = [float(ms.sigmas[k]) for k in range(1, len(ms.sigmas), stride)]
    return torch.FloatTensor(picked[::-1] + tail)


def normal_schedule(ms: ModelSampling, steps: int, sgm: bool = False) -> torch.Tensor:
    """Timesteps evenly spaced from t_max to t_min, mapped to sigmas by log-sigma interpolation.

    ``sgm`` (sgm_uniform) spaces ``steps + 1`` points and drops the last, so t_min itself is never visited.
    """
    start = ms.timestep(ms.sigma_max)
    end = ms.timestep(ms.sigma_min)
    append = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append = False
        timesteps = torch.linspace(start, end, steps)
    sigmas = [float(ms.sigma(t)) for t in timesteps]
    return torch.FloatTensor(sigmas + [0.0] if append else sigmas)


def sgm_uniform_schedule(ms: ModelSampling, steps: int) -> torch.Tensor:
    return normal_schedule(ms, steps, sgm=True)


def beta_schedule(ms: ModelSampling, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at quantiles of a Beta(alpha, beta) distribution (arXiv 2407.12173); repeats are dropped."""
    last_index = len(ms.sigmas) - 1
    quantiles = 1 - numpy.linspace(0, 1, steps, endpoint=False)
    timesteps = numpy.rint(scipy.stats.beta.ppf(quantiles, alpha, beta) * last_index)
    picked, previous = [], None
    for t in timesteps:
        if t != previous:
            picked.append(float(ms.sigmas[int(t)]))
        previous = t
    return torch.FloatTensor(picked + [0.0])


def linear_quadratic_schedule(ms: ModelSampling, steps: int, threshold_noise: float = 0.025,
                              linear_steps: int | None = None) -> torch.Tensor:
    """Mochi's schedule: linear up to ``threshold_noise`` then quadratic, as fractions of sigma_max."""
    if steps == 1:
        fractions = [1.0, 0.0]
    else:
        if linear_steps is None:
            linear_steps = steps // 2
        quadratic_steps = steps - linear_steps
        linear_part = [k * threshold_noise / linear_steps for k in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        a = step_diff / (linear_steps * quadratic_steps ** 2)
        b = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps ** 2)
        c = a * (linear_steps ** 2)
        quadratic_part = [a * (k ** 2) + b * k + c for k in range(linear_steps, steps)]
        fractions = [1.0 - f for f in linear_part + quadratic_part + [1.0]]
    return torch.FloatTensor(fractions) * ms.sigma_max.cpu()


SCHEDULERS: dict[str, Scheduler] = {
    "simple": simple_schedule,
    "sgm_uniform": sgm_uniform_schedule,
    "karras": _from_range(get_sigmas_karras),
    "exponential": _from_range(get_sigmas_exponential),
    "ddim_uniform": ddim_uniform_schedule,
    "beta": beta_schedule,
    "normal": normal_schedule,
    "linear_quadratic": linear_quadratic_schedule,
    "kl_optimal": _from_range(get_sigmas_kl_optimal),
}
SCHEDULER_NAMES: list[str] = list(SCHEDULERS)

# Samplers whose last step would be wasted on the smallest sigma: one extra step is scheduled and the
# penultimate sigma dropped, so they go from sigma_min's neighbour straight to 0.
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


def calculate_sigmas(ms: ModelSampling, scheduler: str, steps: int) -> torch.Tensor:
    try:
        return SCHEDULERS[scheduler](ms, steps)
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler!r}") from None


def _sampler_sigmas(ms: ModelSampling, scheduler: str, steps: int, sampler_name: str | None) -> torch.Tensor:
    if sampler_name not in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
        return calculate_sigmas(ms, scheduler, steps)
    sigmas = calculate_sigmas(ms, scheduler, steps + 1)
    return torch.cat([sigmas[:-2], sigmas[-1:]])


def sigmas_for(ms: ModelSampling, scheduler: str, steps: int, denoise: float | None = 1.0,
               sampler_name: str | None = None) -> torch.Tensor:
    """The sigmas KSampler runs for ``steps`` at ``denoise`` strength.

    Partial denoise schedules ``int(steps / denoise)`` steps and keeps the last ``steps + 1`` sigmas, so img2img
    starts part-way down the full schedule. ``denoise <= 0`` gives an empty tensor (nothing to sample).
    """
    if denoise is None or denoise > 0.9999:
        return _sampler_sigmas(ms, scheduler, steps, sampler_name)
    if denoise <= 0.0:
        return torch.FloatTensor([])
    return _sampler_sigmas(ms, scheduler, int(steps / denoise), sampler_name)[-(steps + 1):]


def trim_sigmas(sigmas: torch.Tensor, start_step: int | None = None, last_step: int | None = None,
                force_full_denoise: bool = False) -> torch.Tensor | None:
    """KSamplerAdvanced's step window. ``None`` means nothing is left to run (the latent passes through)."""
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[:last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return None
        sigmas = sigmas[start_step:]
    return sigmas


def is_max_denoise(ms: ModelSampling, sigmas: torch.Tensor) -> bool:
    """Whether sampling starts from pure noise (first sigma at or above the model's sigma_max)."""
    max_sigma = float(ms.sigma_max)
    first = float(sigmas[0])
    return math.isclose(max_sigma, first, rel_tol=1e-05) or first > max_sigma
