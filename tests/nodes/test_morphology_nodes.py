"""Morphology and the YCbCr planes: declarations against upstream's /object_info, and the operations kornia does
for ComfyUI (the parity goldens morphology_* and *yuv* compare whole images with upstream's)."""
from __future__ import annotations

import pytest
import torch

from nodes import morphology
from tests.nodes.test_latent_nodes import assert_matches_capture


@pytest.mark.parametrize("name", sorted(morphology.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(morphology, name)


def run(operation: str, image: torch.Tensor, kernel_size: int) -> torch.Tensor:
    (out,) = morphology.Morphology().process(image, operation, kernel_size)
    return out


def point(value: float, background: float, y: int = 4, x: int = 5) -> torch.Tensor:
    image = torch.full((1, 9, 11, 3), background)
    image[0, y, x] = value
    return image


def covered(out: torch.Tensor, value: float) -> tuple[range, range]:
    ys, xs = torch.where(out[0, :, :, 0] == value)
    return range(int(ys.min()), int(ys.max()) + 1), range(int(xs.min()), int(xs.max()) + 1)


def test_an_odd_square_grows_and_shrinks_a_point_evenly():
    assert covered(run("dilate", point(1.0, 0.0), 3), 1.0) == (range(3, 6), range(4, 7))
    assert covered(run("erode", point(0.0, 1.0), 5), 0.0) == (range(2, 7), range(3, 8))


def test_an_even_square_is_anchored_as_kornia_anchors_it():
    # the anchor is cell (2, 2) of a 4 x 4 kernel; dilation reflects the kernel and erosion does not
    assert covered(run("dilate", point(1.0, 0.0), 4), 1.0) == (range(2, 6), range(3, 7))
    assert covered(run("erode", point(0.0, 1.0), 4), 0.0) == (range(3, 7), range(4, 8))


def test_pixels_outside_the_image_take_no_part():
    ones, zeros = torch.ones(1, 6, 6, 3), torch.zeros(1, 6, 6, 3)
    assert torch.equal(run("erode", ones, 5), ones) and torch.equal(run("dilate", zeros, 7), zeros)
    assert torch.equal(run("dilate", point(0.5, 0.2), 999), torch.full((1, 9, 11, 3), 0.5))


def test_the_composite_operations():
    image = torch.rand(2, 10, 12, 3, generator=torch.Generator().manual_seed(0))
    opened = run("dilate", run("erode", image, 3), 3)
    closed = run("erode", run("dilate", image, 3), 3)
    assert torch.equal(run("open", image, 3), opened) and torch.equal(run("close", image, 3), closed)
    assert torch.equal(run("top_hat", image, 3), image - opened)
    assert torch.equal(run("bottom_hat", image, 3), closed - image)
    assert torch.equal(run("gradient", image, 3), run("dilate", image, 3) - run("erode", image, 3))
    assert (run("gradient", image, 3) >= 0).all()


def test_an_unknown_operation_is_refused():
    with pytest.raises(ValueError, match="Invalid operation"):
        run("thin", torch.zeros(1, 4, 4, 3), 3)


def test_rgb_to_yuv_gives_three_grey_planes_with_bt601_weights():
    red = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 3, 3)
    y, u, v = morphology.ImageRGBToYUV().convert(red)
    for plane in (y, u, v):
        assert plane.shape == red.shape and torch.equal(plane, plane[..., :1].expand_as(plane))
    assert y[0, 0, 0, 0].item() == pytest.approx(0.299)
    assert u[0, 0, 0, 0].item() == pytest.approx(-0.299 * 0.564 + 0.5)
    assert v[0, 0, 0, 0].item() == pytest.approx(0.701 * 0.713 + 0.5)


def test_yuv_to_rgb_inverts_it_takes_colour_planes_by_their_mean_and_clamps():
    image = torch.rand(2, 5, 4, 3, generator=torch.Generator().manual_seed(1))
    planes = morphology.ImageRGBToYUV().convert(image)
    (back,) = morphology.ImageYUVToRGB().convert(*planes)
    torch.testing.assert_close(back, image, rtol=0, atol=1e-6)
    y, u, v = planes
    tinted = u + torch.tensor([0.1, -0.1, 0.0])  # the same mean
    torch.testing.assert_close(morphology.ImageYUVToRGB().convert(y, tinted, v)[0], back, rtol=0, atol=1e-6)
    (clamped,) = morphology.ImageYUVToRGB().convert(y, torch.zeros_like(u), torch.ones_like(v))
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_rgb_to_yuv_needs_three_channels():
    with pytest.raises(ValueError, match="3 channels"):
        morphology.ImageRGBToYUV().convert(torch.zeros(1, 2, 2, 4))
