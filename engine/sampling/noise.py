"""The initial latent noise, drawn as ComfyUI draws it so the same seed gives the same image.

Noise always comes from a CPU generator, in the latent's dtype, so results do not depend on the accelerator;
callers move it to the device afterwards. That generator is torch's global one, seeded as ComfyUI seeds it
(torch.manual_seed): code that draws from the global generator while sampling (ToMe's token pairing, HyperTile's
tile sizes, the LCM-upscale sampler, custom samplers) relies on it to give the same result for the same seed.
"""
from __future__ import annotations

from typing import Sequence

import torch


def _cpu_generator(seed: int) -> torch.Generator:
    # Same stream as torch.manual_seed(seed), without touching the global generator.
    return torch.Generator(device="cpu").manual_seed(seed)


def _seeded_global_generator(seed: int) -> torch.Generator:
    # torch.manual_seed also seeds the accelerators' generators, which such code may draw from as well.
    return torch.manual_seed(seed)


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """Gaussian noise shaped like ``latent`` for ``seed``.

    Without ``batch_index`` the whole batch is one draw. With it (a latent that is a slice of a larger batch,
    e.g. from "Latent From Batch"), per-image noise is drawn one image at a time for indices 0..max(index),
    and each entry takes the noise of its index, so image k gets the same noise as in the full batch run.
    """
    generator = _seeded_global_generator(seed)
    kwargs = dict(dtype=latent.dtype, layout=latent.layout, generator=generator, device="cpu")
    if batch_index is None:
        return torch.randn(latent.size(), **kwargs)
    wanted = set(int(i) for i in batch_index)
    per_image = {}
    for i in range(max(wanted) + 1):
        noise = torch.randn([1] + list(latent.size())[1:], **kwargs)
        if i in wanted:
            per_image[i] = noise
    return torch.cat([per_image[int(i)] for i in batch_index], dim=0)


def inpaint_noise_for_ddim(noise: torch.Tensor, seed: int | None) -> torch.Tensor:
    """The "ddim" sampler re-noises masked-out regions with its own noise, drawn from seed + 1.

    ComfyUI uses 41 when no seed is given (so seed + 1 = 42).
    """
    generator = _cpu_generator((41 if seed is None else seed) + 1)
    return torch.randn(noise.shape, generator=generator, device="cpu").to(noise.dtype).to(noise.device)
