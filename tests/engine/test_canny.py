"""Canny edges on synthetic images whose edges follow from the algorithm's rules (kornia's, which ComfyUI uses)."""
from __future__ import annotations

import torch

from engine.canny import canny

# A unit step, blurred (5x5, sigma 1) and differentiated by the raw Sobel kernel, peaks at about 2.59.
UNIT_STEP_MAGNITUDE = 2.59


def vertical_step(height=1.0, size=16, at=8, channels=1):
    image = torch.zeros(1, channels, size, size)
    image[..., at:] = height
    return image


def test_a_step_gives_one_line_on_the_darker_side_of_the_tie():
    # The two pixels either side of a step tie; the left (upper) one is kept.
    edges = canny(vertical_step(), 0.4, 0.8)
    assert edges.shape == (1, 1, 16, 16)
    expected = torch.zeros(16, 16)
    expected[:, 7] = 1
    assert torch.equal(edges[0, 0], expected)
    rows = canny(vertical_step().transpose(-1, -2), 0.4, 0.8)
    assert torch.equal(rows[0, 0], expected.t())


def test_flat_images_have_no_edges():
    assert canny(torch.full((2, 3, 12, 12), 0.7), 0.01, 0.02).sum() == 0


def test_thresholds_apply_to_the_gradient_magnitude():
    weak = 0.25  # magnitude about 0.65: above the low threshold only
    assert weak * UNIT_STEP_MAGNITUDE > 0.4 and weak * UNIT_STEP_MAGNITUDE < 0.8
    assert canny(vertical_step(weak), 0.4, 0.8).sum() == 0  # weak and touching no strong pixel: dropped
    assert canny(vertical_step(weak), 0.4, 0.6)[0, 0, :, 7].tolist() == [1.0] * 16


def test_weak_edges_survive_only_next_to_strong_ones():
    image = vertical_step(1.0, size=32, at=8)
    image[..., 24:] += 0.25  # a second, weak step far from the first
    edges = canny(image, 0.4, 0.8)[0, 0]
    assert edges[:, 7].tolist() == [1.0] * 32
    assert edges[:, 12:].sum() == 0


def test_colour_images_are_read_as_bt601_grey():
    green = vertical_step(channels=3)
    green[:, (0, 2)] = 0  # 0.587 * 2.59: strong
    blue = vertical_step(channels=3)
    blue[:, :2] = 0  # 0.114 * 2.59: below the low threshold
    assert canny(green, 0.4, 0.8)[0, 0, :, 7].sum() == 16
    assert canny(blue, 0.4, 0.8).sum() == 0


def test_output_keeps_the_input_dtype_and_is_binary():
    image = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0)).half()
    edges = canny(image, 0.1, 0.2)
    assert edges.dtype == torch.float16 and edges.shape == (2, 1, 20, 24)
    assert set(edges.unique().tolist()) <= {0.0, 1.0} and edges.sum() > 0
