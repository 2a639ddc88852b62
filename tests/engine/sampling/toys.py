"""Analytic toy denoisers: data distributions whose exact x0 estimate (and ODE solution) is known in closed form."""
from __future__ import annotations

import torch


def _per_sample(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.view(-1, *([1] * (x.ndim - 1)))


class Gaussian:
    """Data ~ N(mu, s^2) elementwise: E[x0 | x0 + sigma * eps = x] = mu + s^2 / (s^2 + sigma^2) (x - mu)."""

    def __init__(self, mu: float = 0.5, s: float = 0.3):
        self.mu, self.s = mu, s
        self.calls = 0

    def __call__(self, x, sigma, **extra_args):
        self.calls += 1
        return self.mu + self.s ** 2 / (self.s ** 2 + _per_sample(sigma, x) ** 2) * (x - self.mu)

    def ode_solution(self, x_start, sigma_start, sigma_end):
        """The probability-flow ODE keeps (x - mu) / sqrt(s^2 + sigma^2) constant."""
        ratio = ((self.s ** 2 + sigma_end ** 2) / (self.s ** 2 + sigma_start ** 2)) ** 0.5
        return self.mu + ratio * (x_start - self.mu)


class FlowGaussian(Gaussian):
    """The same data seen by a rectified-flow model, x = (1 - sigma) x0 + sigma * eps: with a = 1 - sigma,
    E[x0 | x] = mu + a s^2 / (a^2 s^2 + sigma^2) (x - a mu). Carries the flow ``model_sampling`` for the samplers."""

    def __init__(self, mu: float, s: float, model_sampling):
        super().__init__(mu, s)
        self.model_sampling = model_sampling

    def __call__(self, x, sigma, **extra_args):
        self.calls += 1
        sigma = _per_sample(sigma, x)
        a = 1 - sigma
        return self.mu + a * self.s ** 2 / (a ** 2 * self.s ** 2 + sigma ** 2) * (x - a * self.mu)

    def ode_solution(self, x_start, sigma_start, sigma_end):
        """The flow ODE keeps (x - a mu) / sqrt(a^2 s^2 + sigma^2) constant."""
        def spread(sigma):
            return ((1 - sigma) ** 2 * self.s ** 2 + sigma ** 2) ** 0.5
        standardised = (x_start - (1 - sigma_start) * self.mu) / spread(sigma_start)
        return (1 - sigma_end) * self.mu + spread(sigma_end) * standardised


class Guided:
    """Classifier-free guidance of two Gaussian denoisers, exposing the uncond as the samplers' protocol asks."""

    def __init__(self, cond: Gaussian, uncond: Gaussian, scale: float):
        self.cond, self.uncond, self.scale = cond, uncond, scale
        self.model_sampling = getattr(cond, "model_sampling", None)

    def denoise_with_uncond(self, x, sigma, **extra_args):
        c, u = self.cond(x, sigma), self.uncond(x, sigma)
        return u + (c - u) * self.scale, u

    def __call__(self, x, sigma, **extra_args):
        return self.denoise_with_uncond(x, sigma)[0]


class PointMass:
    """All data is one value, so the exact x0 estimate is that value at every noise level."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, x, sigma, **extra_args):
        return torch.full_like(x, self.value)
