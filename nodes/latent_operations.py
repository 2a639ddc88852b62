"""LATENT_OPERATION values and the nodes that apply them (ComfyUI's comfy_extras/nodes_latent.py).

A LATENT_OPERATION is a function `operation(latent=tensor) -> tensor` on [B, C, H, W] latents. It is applied to a
LATENT (LatentApplyOperation) or, at every sampling step, to the guidance: the positive prediction's difference
from the negative one (LatentApplyOperationCFG).
"""
from __future__ import annotations

import torch

from .latent import EXTRAS_LATENT
from .postprocessing import convolve_channels, sharpen_kernel


def _channel_norm(latent: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The length of each pixel's channel vector, [B, 1, H, W]."""
    return (torch.linalg.vector_norm(latent, dim=1) + epsilon)[:, None]


def tonemap_reinhard(latent: torch.Tensor, multiplier: float) -> torch.Tensor:
    """Reinhard's x / (1 + x) on the channel vectors' lengths, in units of (mean + 5 std of the lengths) *
    multiplier per sample: long vectors are compressed, the directions kept."""
    magnitude = _channel_norm(latent, 1e-10)
    direction = latent / magnitude
    mean = torch.mean(magnitude, dim=(1, 2, 3), keepdim=True)
    std = torch.std(magnitude, dim=(1, 2, 3), keepdim=True)
    top = (std * 5 + mean) * multiplier
    scaled = magnitude * (1.0 / top)
    return direction * (scaled / (scaled + 1.0) * top)


def sharpen(latent: torch.Tensor, radius: int, sigma: float, alpha: float) -> torch.Tensor:
    """ImageSharpen's unsharp mask on the channel vectors' directions, their lengths kept."""
    luminance = _channel_norm(latent, 1e-6)
    kernel = sharpen_kernel(radius * 2 + 1, sigma, alpha, luminance.device)
    return luminance * convolve_channels(latent / luminance, kernel, radius)


class _Node:
    OUTPUT_TOOLTIPS = (None,)
    CATEGORY = "latent/advanced/operations"
    EXPERIMENTAL = True
    DISPLAY_NAME = None
    API_NODE = False
    RELATIVE_PYTHON_MODULE = EXTRAS_LATENT


class LatentApplyOperation(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT", {}), "operation": ("LATENT_OPERATION", {})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "apply"

    def apply(self, samples, operation):
        return ({**samples, "samples": operation(latent=samples["samples"])},)


class LatentApplyOperationCFG(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}), "operation": ("LATENT_OPERATION", {})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    def patch(self, model, operation):
        def pre_cfg(args):
            out = list(args["conds_out"])
            if len(out) == 2:  # positive and negative (zeros when cfg 1 left the negative out)
                out[0] = operation(latent=out[0] - out[1]) + out[1]
            else:
                out[0] = operation(latent=out[0])
            return out

        model = model.clone()
        model.set_model_sampler_pre_cfg_function(pre_cfg)
        return (model,)


class LatentOperationTonemapReinhard(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"multiplier": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("LATENT_OPERATION",)
    FUNCTION = "op"

    def op(self, multiplier):
        return (lambda latent, **kwargs: tonemap_reinhard(latent, multiplier),)


class LatentOperationSharpen(_Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sharpen_radius": ("INT", {"default": 9, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
                             "alpha": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 5.0, "step": 0.01})}}

    RETURN_TYPES = ("LATENT_OPERATION",)
    FUNCTION = "op"

    def op(self, sharpen_radius, sigma, alpha):
        return (lambda latent, **kwargs: sharpen(latent, sharpen_radius, sigma, alpha),)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (LatentApplyOperation, LatentApplyOperationCFG,
                                                     LatentOperationTonemapReinhard, LatentOperationSharpen)}
