"""HyperTile (tfernd/HyperTile, as ComfyUI applies it): self-attention queries at the UNet's finest levels cut into
tiles that are attended separately, then put back in place.

The tiles are of about `tile_size` pixels (at least 32); with `swap_size` > 1 the tiling is drawn at random among
the `swap_size` finest that fit, from torch's global generator, as ComfyUI draws it. As in ComfyUI only the queries
are tiled: the keys and values stay whole and are split into as many consecutive chunks as there are tiles.
"""
from __future__ import annotations

import math

import torch


def random_divisor(value: int, min_value: int, max_options: int = 1) -> int:
    """value // d for a divisor d of `value` of at least `min_value`: the largest such quotient, or one drawn among
    the `max_options` largest (ComfyUI's draw never picks the last of them)."""
    min_value = min(min_value, value)
    quotients = [value // d for d in range(min_value, value + 1) if value % d == 0][:max_options]
    index = torch.randint(low=0, high=len(quotients) - 1, size=(1,)).item() if len(quotients) > 1 else 0
    return quotients[index]


class HyperTile:
    """The attn1_patch / attn1_output_patch pair of one HyperTile node; the tiling of the current attention is
    kept between the two."""

    def __init__(self, tile_size: int, swap_size: int, max_depth: int, scale_depth: bool):
        self.latent_tile_size = max(32, tile_size) // 8
        self.swap_size, self.max_depth, self.scale_depth = swap_size, max_depth, scale_depth
        self.tiling = None  # (tiles down, tiles across, height, width) while an attention runs tiled

    def tile(self, q, k, v, extra_options):
        shape = extra_options["original_shape"]
        # token counts of the levels it applies to: the latent's, then each level halved
        levels = [(shape[-2] / 2 ** i) * (shape[-1] / 2 ** i) for i in range(self.max_depth + 1)]
        tokens = q.shape[-2]
        if tokens not in levels:
            return q, k, v
        aspect = shape[-1] / shape[-2]
        # (ComfyUI's sides: on a latent that is not square they come out swapped, and so are its tiles)
        height, width = round(math.sqrt(tokens * aspect)), round(math.sqrt(tokens / aspect))
        factor = 2 ** levels.index(tokens) if self.scale_depth else 1
        down = random_divisor(height, self.latent_tile_size * factor, self.swap_size)
        across = random_divisor(width, self.latent_tile_size * factor, self.swap_size)
        if down * across > 1:
            b, _, c = q.shape
            q = q.reshape(b, down, height // down, across, width // across, c).permute(0, 1, 3, 2, 4, 5)
            q = q.reshape(b * down * across, -1, c)
            self.tiling = (down, across, height, width)
        return q, k, v

    def untile(self, out, extra_options):
        if self.tiling is None:
            return out
        down, across, height, width = self.tiling
        self.tiling = None
        c = out.shape[-1]
        out = out.reshape(-1, down, across, height // down, width // across, c).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(-1, height * width, c)
