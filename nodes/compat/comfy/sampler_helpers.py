"""`comfy.sampler_helpers`: the mask fitting samplers use."""
from __future__ import annotations

from .utils import reshape_mask


def prepare_mask(noise_mask, shape, device):
    """`noise_mask` resized and repeated to the latent `shape`, on `device`."""
    return reshape_mask(noise_mask, shape).to(device)
