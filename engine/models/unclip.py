"""unCLIP conditioning for SDXL ("revision"): CLIP image embeddings in place of the text's pooled output.

unCLIPConditioning appends ``{"clip_vision_output", "strength", "noise_augmentation"}`` entries to a cond's
``unclip_conditioning`` list. For SDXL and its refiner, ComfyUI then feeds the UNet, instead of the pooled text
vector, each image embedding noised by the embedding noise augmentor (a 1000-level squared-cosine schedule), times
its strength; several embeddings are summed and the sum is noised again at the merge level (0 for SDXL). Noise
comes from a CPU generator seeded with the sampling seed minus 10, reseeded for every embedding, so all of them
get the same noise and the merge takes the next numbers of that stream. Torch only: imported with the model.
"""
from __future__ import annotations

import functools
import math

import torch

AUGMENTATION_LEVELS = 1000
SEED_OFFSET = -10  # the augmentation noise is drawn from the sampling seed minus 10
SDXL_MERGE_AUGMENTATION = 0.0  # SDXL re-noises a sum of several embeddings at level 0


@functools.cache
def augmentation_schedule() -> tuple[torch.Tensor, torch.Tensor]:
    """(signal scale, noise scale) per level: sqrt(alpha_bar) and sqrt(1 - alpha_bar) of the squared-cosine
    schedule, whose betas are capped at 0.999 (computed in float64, kept as float32 like ComfyUI's buffers)."""
    t = torch.arange(AUGMENTATION_LEVELS + 1, dtype=torch.float64) / AUGMENTATION_LEVELS
    alpha_bar = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    cumulative = torch.cumprod(1 - betas, dim=0)
    return cumulative.sqrt().float(), (1 - cumulative).sqrt().float()


def noise_level(augmentation: float) -> int:
    """The schedule level for a 0..1 ``noise_augmentation`` (Python's round, as ComfyUI)."""
    return round((AUGMENTATION_LEVELS - 1) * augmentation)


def augment(embedding: torch.Tensor, level: int, noise: torch.Tensor) -> torch.Tensor:
    """``embedding`` diffused to ``level``: signal * x + noise_scale * noise (the clip statistics are 0 / 1)."""
    signal, noise_scale = augmentation_schedule()
    return signal[level] * embedding + noise_scale[level] * noise.to(embedding)


def _noise_stream(seed: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-embedding noise and the merge noise: the first two draws of a generator seeded seed - 10."""
    generator = torch.Generator(device="cpu").manual_seed(seed + SEED_OFFSET)
    first = torch.randn((1, width), generator=generator)
    return first, torch.randn((1, width), generator=generator)


def sdxl_pooled(entries: list[dict], seed: int, width: int) -> torch.Tensor:
    """The [1, width] vector SDXL takes as pooled output for a cond's ``unclip_conditioning`` entries."""
    parts = []
    per_embedding, merge_noise = _noise_stream(seed, width)
    for entry in entries:
        embeds = entry["clip_vision_output"].image_embeds
        for embedding in embeds.reshape(-1, embeds.shape[-1]):
            if embedding.shape[-1] != width:
                raise ValueError(f"unCLIP: the CLIP vision embeddings are {embedding.shape[-1]} wide, but this "
                                 f"model's pooled input is {width} wide (SDXL revision needs CLIP-G vision)")
            level = noise_level(entry["noise_augmentation"])
            parts.append(augment(embedding.float()[None], level, per_embedding) * entry["strength"])
    if len(parts) == 1:
        return parts[0]
    return augment(torch.stack(parts).sum(0), noise_level(SDXL_MERGE_AUGMENTATION), merge_noise)
