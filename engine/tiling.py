"""Running an image-to-image function over overlapping tiles, as ComfyUI's tiled scaling does.

Tiles start every ``tile - overlap`` pixels (the last one pulled back so it ends at the border), each result is
weighted by a mask that ramps linearly up over ``overlap * scale`` output pixels at every edge, and the weighted
sum is divided by the summed weights. An image that fits in one tile is passed through whole.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import torch


def tile_count(width: int, height: int, tile: int, overlap: int) -> int:
    """How many tiles one image of ``width`` x ``height`` is cut into."""
    def along(size: int) -> int:
        return 1 if size <= tile else math.ceil((size - overlap) / (tile - overlap))
    return along(height) * along(width)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis of length ``size``."""
    if size <= tile:
        return [0]
    return [min(start, size - overlap) for start in range(0, size - overlap, tile - overlap)]


def blend_mask(shape: torch.Size, feather: int, device: torch.device) -> torch.Tensor:
    """Weights for one (N, C, H, W) tile result: linear ramps ``1/f .. f/f`` at each edge of H and W."""
    mask = torch.ones(shape, device=device)
    for dim in (2, 3):
        if feather >= shape[dim]:  # a tile narrower than its ramp keeps full weight along this axis
            continue
        ramp = torch.arange(1, feather + 1, device=device, dtype=mask.dtype) / feather
        view = [1, 1, 1, 1]
        view[dim] = feather
        mask.narrow(dim, 0, feather).mul_(ramp.view(view))
        mask.narrow(dim, shape[dim] - feather, feather).mul_(ramp.flip(0).view(view))
    return mask


@torch.inference_mode()
def tiled_scale(samples: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], *, tile: int | tuple[int, int],
                overlap: int, scale: float, out_channels: int, output_device: torch.device | str | None = None,
                on_tile: Callable[[], None] | None = None) -> torch.Tensor:
    """``fn`` (N, C, H, W) -> (N, out_channels, H*scale, W*scale), applied per image of ``samples`` over
    ``tile``-pixel tiles (or (height, width) ones) overlapping by ``overlap``; ``on_tile`` runs after every tile
    (progress)."""
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    output_device = samples.device if output_device is None else torch.device(output_device)
    batch, _, height, width = samples.shape
    out_h, out_w = round(height * scale), round(width * scale)
    output = torch.empty((batch, out_channels, out_h, out_w), device=output_device)
    feather = round(overlap * scale)
    for b in range(batch):
        image = samples[b:b + 1]
        if height <= tile_h and width <= tile_w:
            output[b:b + 1] = fn(image).to(output_device)
            if on_tile is not None:
                on_tile()
            continue
        total = torch.zeros((1, out_channels, out_h, out_w), device=output_device)
        weight = torch.zeros_like(total)
        for y, x in itertools.product(tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)):
            part = fn(image[:, :, y:y + tile_h, x:x + tile_w]).to(output_device)
            mask = blend_mask(part.shape, feather, output_device)
            oy, ox = round(y * scale), round(x * scale)
            total[:, :, oy:oy + part.shape[2], ox:ox + part.shape[3]] += part * mask
            weight[:, :, oy:oy + part.shape[2], ox:ox + part.shape[3]] += mask
            if on_tile is not None:
                on_tile()
        output[b:b + 1] = total / weight
    return output
