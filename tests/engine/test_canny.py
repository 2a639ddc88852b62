"""Canny edges on synthetic images whose edges follow from the algorithm's rules (kornia's, which ComfyUI uses)."""
from __future__ import annotations

import torch

from engine.canny import _thin, canny

# A unit step, blurred (5x5, sigma 1) and differentiated by the raw Sobel kernel, peaks at about 2.59.
UNIT_STEP_MAGNITUDE = 2.59


def vertical_step(height=1.0, size=16, at=8, channels=1):
    image = torch.zeros(1, channels, size, size)
    image[..., at:] = height
    return image


def step_line(edges: torch.Tensor) -> list[float]:
    """The values along the one column that a vertical step at x=8 marks in ``edges`` [H, W].

    The pixels either side of the step have (nearly) the same magnitude; float rounding of the blur picks one of
    them, so the line may be on column 7 or 8, but there is exactly one.
    """
    columns = edges.nonzero()[:, 1].unique().tolist()
    assert columns in ([7], [8]), columns
    return edges[:, columns[0]].tolist()


def test_a_step_gives_one_full_line_beside_it():
    edges = canny(vertical_step(), 0.4, 0.8)
    assert edges.shape == (1, 1, 16, 16)
    assert step_line(edges[0, 0]) == [1.0] * 16
    assert step_line(canny(vertical_step().transpose(-1, -2), 0.4, 0.8)[0, 0].t()) == [1.0] * 16


def test_an_exact_tie_along_an_axis_keeps_the_left_or_upper_pixel():
    # kornia's rule: the right/lower neighbour may equal the pixel kept; the left/upper one must be smaller.
    gx = torch.zeros(1, 1, 8, 8)
    gx[..., 3:5] = 2.0
    assert _thin(gx, torch.zeros_like(gx))[0, 0].nonzero()[:, 1].unique().tolist() == [3]
    gy = gx.transpose(-1, -2).contiguous()
    assert _thin(torch.zeros_like(gy), gy)[0, 0].nonzero()[:, 0].unique().tolist() == [3]


def test_flat_images_have_no_edges():
    assert canny(torch.full((2, 3, 12, 12), 0.7), 0.01, 0.02).sum() == 0


def test_thresholds_apply_to_the_gradient_magnitude():
    weak = 0.25  # magnitude about 0.65: above the low threshold only
    assert weak * UNIT_STEP_MAGNITUDE > 0.4 and weak * UNIT_STEP_MAGNITUDE < 0.8
    assert canny(vertical_step(weak), 0.4, 0.8).sum() == 0  # weak and touching no strong pixel: dropped
    assert step_line(canny(vertical_step(weak), 0.4, 0.6)[0, 0]) == [1.0] * 16


def test_weak_edges_survive_only_next_to_strong_ones():
    image = vertical_step(1.0, size=32, at=8)
    image[..., 24:] += 0.25  # a second, weak step far from the first
    edges = canny(image, 0.4, 0.8)[0, 0]
    assert step_line(edges) == [1.0] * 32  # and nothing at the weak step


def test_colour_images_are_read_as_bt601_grey():
    green = vertical_step(channels=3)
    green[:, (0, 2)] = 0  # 0.587 * 2.59: strong
    blue = vertical_step(channels=3)
    blue[:, :2] = 0  # 0.114 * 2.59: below the low threshold
    assert step_line(canny(green, 0.4, 0.8)[0, 0]) == [1.0] * 16
    assert canny(blue, 0.4, 0.8).sum() == 0


def test_output_keeps_the_input_dtype_and_is_binary():
    image = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0)).half()
    edges = canny(image, 0.1, 0.2)
    assert edges.dtype == torch.float16 and edges.shape == (2, 1, 20, 24)
    assert set(edges.unique().tolist()) <= {0.0, 1.0} and edges.sum() > 0
