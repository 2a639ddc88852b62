"""engine.tiling: tile layout, blend weights, and that tiling a local function changes nothing."""
from __future__ import annotations

import pytest
import torch

from engine import tiling


@pytest.mark.parametrize("size,tile,overlap", [(40, 64, 8), (64, 64, 8), (65, 64, 8), (200, 64, 16), (513, 512, 32)])
def test_tiles_cover_the_axis_and_match_the_count(size, tile, overlap):
    starts = tiling.tile_starts(size, tile, overlap)
    covered = set()
    for s in starts:
        covered.update(range(s, min(s + tile, size)))
    assert covered == set(range(size))
    assert starts == sorted(starts) and starts[0] == 0
    assert tiling.tile_count(size, 10, tile, overlap) == len(starts)
    assert tiling.tile_count(size, size, tile, overlap) == len(starts) ** 2


def test_tile_count_follows_the_ceil_formula():
    # ceil((1000 - 32) / (512 - 32)) = ceil(2.0167) = 3 columns; 300 px fits in one row
    assert tiling.tile_count(1000, 300, 512, 32) == 3


def test_blend_mask_ramps_linearly_at_each_edge():
    mask = tiling.blend_mask(torch.Size((1, 1, 10, 10)), 4, torch.device("cpu"))
    middle = torch.tensor([.25, .5, .75, 1, 1, 1, 1, .75, .5, .25])
    assert torch.allclose(mask[0, 0, 4], middle)
    assert torch.allclose(mask[0, 0, 0], middle * 0.25)  # the ramps multiply in the corners
    assert torch.allclose(mask[0, 0, :, 5], middle)
    # a side no longer than the ramp is left at full weight along that axis
    narrow = tiling.blend_mask(torch.Size((1, 1, 3, 10)), 4, torch.device("cpu"))
    assert torch.allclose(narrow[0, 0, 0], narrow[0, 0, 1]) and narrow[0, 0, 0, 4] == 1


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_pointwise_function_is_unchanged_by_tiling(scale):
    images = torch.rand(2, 3, 37, 53)

    def fn(x):  # depends on each pixel alone, so every tile computes exactly what the whole image would
        return torch.sin(3 * x).repeat_interleave(scale, 2).repeat_interleave(scale, 3)

    calls = []
    out = tiling.tiled_scale(images, fn, tile=16, overlap=4, scale=scale, out_channels=3,
                             on_tile=lambda: calls.append(1))
    assert out.shape == (2, 3, 37 * scale, 53 * scale)
    assert torch.allclose(out, fn(images), atol=1e-6)
    assert len(calls) == 2 * tiling.tile_count(53, 37, 16, 4)


def test_an_image_within_one_tile_is_passed_whole():
    seen = []
    images = torch.rand(1, 3, 16, 16)
    out = tiling.tiled_scale(images, lambda x: seen.append(x.shape) or x * 2, tile=16, overlap=4, scale=1,
                             out_channels=3)
    assert seen == [(1, 3, 16, 16)] and torch.equal(out, images * 2)
