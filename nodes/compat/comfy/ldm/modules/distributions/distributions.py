"""`comfy.ldm.modules.distributions.distributions`: the diagonal Gaussian a VAE encoder's moments describe."""
from __future__ import annotations

import math

import torch


class DiagonalGaussianDistribution:
    """A Gaussian per element: `parameters` holds the means and log-variances stacked along dim 1 (log-variance
    kept to -30..20). `deterministic` makes it a point mass at the mean."""

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False):
        self.parameters = parameters
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.deterministic = deterministic
        if deterministic:
            self.std = self.var = torch.zeros_like(self.mean)
        else:
            self.std, self.var = (0.5 * self.logvar).exp(), self.logvar.exp()

    def sample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self, other: "DiagonalGaussianDistribution | None" = None) -> torch.Tensor:
        """KL(self || other), `other` the standard normal by default, summed over all but the batch dim."""
        if self.deterministic:
            return torch.zeros(1)
        mean, var, logvar = (0.0, 1.0, 0.0) if other is None else (other.mean, other.var, other.logvar)
        terms = (self.mean - mean) ** 2 / var + self.var / var - 1.0 - self.logvar + logvar
        return 0.5 * terms.sum(dim=[1, 2, 3])

    def nll(self, sample: torch.Tensor, dims=(1, 2, 3)) -> torch.Tensor:
        """The negative log-likelihood of `sample`, summed over `dims`."""
        if self.deterministic:
            return torch.zeros(1)
        terms = math.log(2.0 * math.pi) + self.logvar + (sample - self.mean) ** 2 / self.var
        return 0.5 * terms.sum(dim=list(dims))
