"""A weight patch that multiplies parameters by a factor, through the model manager's patch protocol (like a
LoRA's: ``deltas(target, params)`` times the patch's strength is added to the weights, and taken away again when
a clone without it runs)."""
from __future__ import annotations

from typing import Mapping

import torch

from .manager import LazyTensors


class WeightScale:
    """Multiplies each parameter whose name ends in one of `suffixes` by `factor` (delta = weight * (factor - 1),
    applied at strength 1)."""

    def __init__(self, suffixes: tuple[str, ...], factor: float):
        self.suffixes, self.factor = tuple(suffixes), float(factor)

    def deltas(self, target: str, params: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return LazyTensors({name: (lambda p=param: p.float() * (self.factor - 1.0))
                            for name, param in params.items() if name.endswith(self.suffixes)})


def scaled(owner, factors: Mapping[tuple[str, ...], float]):
    """A clone of `owner` (MODEL or CLIP) carrying a WeightScale for each (suffixes: factor) that is not 1."""
    owner = owner.clone()
    owner.patches.extend((WeightScale(suffixes, factor), 1.0) for suffixes, factor in factors.items() if factor != 1.0)
    return owner
