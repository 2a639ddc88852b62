"""unCLIP conditioning: CLIP image embeddings as the UNet's label-embedding input (SD2 unCLIP, SDXL "revision").

unCLIPConditioning appends ``{"clip_vision_output", "strength", "noise_augmentation"}`` entries to a cond's
``unclip_conditioning`` list. As ComfyUI computes it, each image embedding is noised by the embedding noise
augmentor (a 1000-level squared-cosine schedule) at its entry's level, followed by that level's sinusoidal timestep
embedding, and the pair is weighted by the strength; several are summed and the sum's embedding half is noised
again at the merge level (SD2 unCLIP: 0.05, SDXL: 0), followed by that level's embedding. SD2 unCLIP takes the
whole vector (zeros for a cond without images); SDXL takes the embedding half in place of the pooled text. Noise
comes from a CPU generator seeded with the sampling seed minus 10, reseeded for every embedding, so all of them
get the same noise and the merge takes the next numbers of that stream. Torch only: imported with the model.
"""
from __future__ import annotations

import functools
import math

import torch
from diffusers.models.embeddings import get_timestep_embedding

AUGMENTATION_LEVELS = 1000
SEED_OFFSET = -10  # the augmentation noise is drawn from the sampling seed minus 10
SDXL_MERGE_AUGMENTATION = 0.0  # SDXL re-noises a sum of several embeddings at level 0
SD2_MERGE_AUGMENTATION = 0.05  # SD2 unCLIP's default; a cond may set "unclip_noise_augment_merge"


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


def level_embedding(level: int, width: int) -> torch.Tensor:
    """[1, width] sinusoidal embedding of a noise level (cosines first, as the LDM ``timestep_embedding``)."""
    return get_timestep_embedding(torch.tensor([level]), width, flip_sin_to_cos=True, downscale_freq_shift=0)


def unclip_vector(entries: list[dict], seed: int, width: int, merge_augmentation: float) -> torch.Tensor:
    """[1, 2 * width]: the noised ``width``-wide image embedding(s) of ``entries`` and their level embedding."""
    parts = []
    per_embedding, merge_noise = _noise_stream(seed, width)
    for entry in entries:
        embeds = entry["clip_vision_output"].image_embeds
        level = noise_level(entry["noise_augmentation"])
        for embedding in embeds.reshape(-1, embeds.shape[-1]):
            if embedding.shape[-1] != width:
                raise ValueError(f"unCLIP: the CLIP vision embeddings are {embedding.shape[-1]} wide, but this "
                                 f"model takes {width}-wide image embeddings")
            noised = augment(embedding.float()[None], level, per_embedding)
            parts.append(torch.cat((noised, level_embedding(level, width)), dim=1) * entry["strength"])
    if len(parts) == 1:
        return parts[0]
    level = noise_level(merge_augmentation)
    noised = augment(torch.stack(parts).sum(0)[:, :width], level, merge_noise)
    return torch.cat((noised, level_embedding(level, width)), dim=1)


def sdxl_pooled(entries: list[dict], seed: int, width: int) -> torch.Tensor:
    """The [1, width] vector SDXL takes as pooled output for a cond's ``unclip_conditioning`` entries."""
    return unclip_vector(entries, seed, width, SDXL_MERGE_AUGMENTATION)[:, :width]


def sd2_adm(entries: list[dict] | None, seed: int, adm_width: int,
            merge_augmentation: float = SD2_MERGE_AUGMENTATION) -> torch.Tensor:
    """The [1, adm_width] label-embedding input of an SD2 unCLIP UNet; zeros for a cond without images."""
    if not entries:
        return torch.zeros((1, adm_width))
    return unclip_vector(entries, seed, adm_width // 2, merge_augmentation)
