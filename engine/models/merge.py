"""Model and CLIP merges (ComfyUI's ModelMerge* and CLIPMerge* nodes) as weight patches.

A merge is a clone of the first model carrying a MergePatch. While the clone runs, each weight that the second
model holds too (same name, same shape) becomes ``weight * model_strength + patch_strength * other``: ``weight`` is
the first model's weight with the patches before the merge, ``other`` the second model's with its own patches
(ComfyUI's ``add_patches(model2's key patches, strength_patch, strength_model)``). Nothing is copied or changed when
the node runs: the second model's weights are read when the patch is applied, so both inputs stay as they were.

The model manager applies a MergePatch through its patch protocol (``deltas`` adds ``patch_strength * other``,
``scales`` multiplies the weight so far by ``model_strength``). Block merges pick the ratio of each weight by the
name ComfyUI gives it (its original layout's: ``input_blocks.1.1.proj_in.weight``, ``double_blocks.0.img_mod...``).
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, Mapping

import torch

from . import convert, flux, sd3, z_image
from .manager import LazyTensors, networks, patched_weights

log = logging.getLogger("comfyd.merge")

# (patch target, the target's parameter names) -> {parameter: (patch strength, model strength)}
Strengths = Callable[[str, tuple[str, ...]], Mapping[str, tuple[float, float]]]


class MergePatch:
    """The weights of `source` (a MODEL or CLIP) mixed into those of the model carrying this patch."""

    def __init__(self, source, strengths: Strengths):
        self.source = source
        self.strengths = strengths
        self._warned: set[tuple[str, str]] = set()

    def deltas(self, target: str, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        other = patched_weights(self.source).get(target, {})
        return LazyTensors({name: functools.partial(_times, other, name, patch)
                            for name, (patch, _) in self._matched(target, weights).items() if patch != 0})

    def scales(self, target: str, weights: Mapping[str, torch.Tensor]) -> Mapping[str, float]:
        return {name: model for name, (_, model) in self._matched(target, weights).items() if model != 1.0}

    def _matched(self, target: str, weights: Mapping[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
        """{parameter both models hold: its strengths}. A weight shaped differently in the second model is left as
        it is (ComfyUI warns too, but still multiplies it by the model strength)."""
        network = dict(networks(self.source)).get(target)
        if network is None:
            return {}
        shapes = {name: param.shape for name, param in network.named_parameters()}
        names = tuple(weights)
        strengths = self.strengths(target, names)
        out = {}
        for name in names:
            if name not in shapes:
                continue
            if shapes[name] != weights[name].shape:
                if (target, name) not in self._warned:
                    self._warned.add((target, name))
                    log.warning("merge: %s %s not merged: shape %s != %s", target, name, tuple(shapes[name]),
                                tuple(weights[name].shape))
                continue
            out[name] = strengths[name]
        return out


def _times(weights: Mapping[str, torch.Tensor], name: str, factor: float) -> torch.Tensor:
    return weights[name] * factor


def merged(owner, other, strengths: Strengths):
    """A clone of `owner` (MODEL or CLIP) with `other`'s weights merged in at `strengths`."""
    out = owner.clone()
    out.patches.append((MergePatch(other, strengths), 1.0))
    return out


def uniform(patch: float, model: float) -> Strengths:
    """The same strengths for every weight."""
    return lambda target, names: dict.fromkeys(names, (float(patch), float(model)))


def ratio(value: float) -> Strengths:
    """ModelMergeSimple's mix: `value` of the first model, the rest of the second."""
    return uniform(1.0 - value, value)


def by_block(ratios: Mapping[str, float]) -> Strengths:
    """ModelMergeBlocks' mix: each weight takes the ratio of the longest of `ratios`' prefixes its ComfyUI name
    starts with (the first ratio when none does)."""
    ratios = dict(ratios)
    default = next(iter(ratios.values()))

    def strengths(target: str, names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
        origins = original_names(names)
        out = {}
        for name in names:
            original = origins.get(name, name)
            prefix = max((p for p in ratios if original.startswith(p)), key=len, default=None)
            value = ratios[prefix] if prefix is not None else default
            out[name] = (1.0 - value, value)
        return out

    return strengths


@functools.lru_cache(maxsize=8)
def original_names(names: tuple[str, ...]) -> dict[str, str]:
    """{our parameter: the name ComfyUI gives it inside the diffusion model} for a diffusion network with
    parameter names `names`; a fused weight (FLUX's ``qkv``) is the name of each of our parts."""
    if z_image.is_z_image_network(names):
        return z_image.parameter_origins(names)
    if flux.is_flux_network(names):
        return flux.parameter_origins(names)
    if sd3.is_sd3_network(names):
        return sd3.parameter_origins(names)
    return {ours: ldm for ldm, ours in convert.ldm_unet_names(names).items()}
