"""Mask and compositing nodes called directly on tiny tensors, one prompt through the real app, and their
declarations against upstream's /object_info."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from engine import folders
from nodes import conditioning, latent, mask
from server.app import build_registry
from tests import testnodes
from tests.conftest import of_type, run_prompt
from tests.nodes.test_latent_nodes import assert_matches_capture, assert_same


@pytest.mark.parametrize("name", sorted(mask.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(mask, name)


def run(name: str, *args, **kwargs):
    """Call node `name`, checking that it left its inputs untouched."""
    before = copy.deepcopy((args, kwargs))
    node = mask.NODE_CLASS_MAPPINGS[name]()
    out = getattr(node, node.FUNCTION)(*args, **kwargs)
    assert_same(before, (args, kwargs))
    return out


def grid(rows):
    return torch.tensor(rows, dtype=torch.float32)[None]


def test_solid_invert_threshold():
    (solid,) = run("SolidMask", 0.25, 3, 2)
    assert solid.shape == (1, 2, 3) and solid.dtype == torch.float32 and (solid == 0.25).all()
    (inverted,) = run("InvertMask", solid)
    assert (inverted == 0.75).all()
    (binary,) = run("ThresholdMask", grid([[0.1, 0.5, 0.9]]), 0.5)
    assert binary.tolist() == [[[0.0, 0.0, 1.0]]]


def test_crop_mask_accepts_2d():
    source = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    (out,) = run("CropMask", source, 1, 2, 3, 10)
    assert torch.equal(out, source[None, 2:4, 1:4])


@pytest.mark.parametrize("operation, expected", [
    ("multiply", [[0.5, 0.7, 0.08, 0.0], [0.5, 0.3, 0.48, 0.0]]),
    ("add", [[0.5, 1.0, 0.6, 0.9], [0.5, 1.0, 1.0, 0.1]]),  # clamped to 1
    ("subtract", [[0.5, 0.3, 0.2, 0.0], [0.5, 0.7, 0.0, 0.0]]),  # clamped to 0
    # The logical operations round first: 0.4, 0.3, 0.2 and 0.1 are unset, 0.6 and more set.
    ("and", [[0.5, 1.0, 0.0, 0.0], [0.5, 0.0, 1.0, 0.0]]),
    ("or", [[0.5, 1.0, 0.0, 1.0], [0.5, 1.0, 1.0, 0.0]]),
    ("xor", [[0.5, 0.0, 0.0, 1.0], [0.5, 1.0, 0.0, 0.0]]),
])
def test_mask_composite_operations_at_offset(operation, expected):
    destination = grid([[0.5, 1.0, 0.4, 0.0], [0.5, 1.0, 0.6, 0.0]])
    source = grid([[0.7, 0.2, 0.9, 0.9], [0.3, 0.8, 0.1, 0.9]])  # at x = 1 its last column falls outside
    (out,) = run("MaskComposite", destination, source, 1, 0, operation)
    torch.testing.assert_close(out, grid(expected))


def test_mask_composite_outside_changes_nothing():
    destination = grid([[0.5, 2.0]])
    (out,) = run("MaskComposite", destination, grid([[1.0]]), 5, 0, "add")
    assert out.tolist() == [[[0.5, 1.0]]]  # still clamped


def test_feather_mask_ramps():
    ones = torch.ones(1, 4, 5)
    (out,) = run("FeatherMask", ones, 2, 3, 0, 0)
    assert out[0, 0].tolist() == pytest.approx([0.5 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert out[0, :, 1].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    # ComfyUI's right ramp scales column -i by (i + 1) / right: column 0 (i = 0) by 1/2, the last by 2/2.
    (out,) = run("FeatherMask", ones, 0, 0, 2, 0)
    assert out[0, 0].tolist() == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])


def _dot(size=5):
    m = torch.zeros(1, size, size)
    m[0, size // 2, size // 2] = 1.0
    return m


def test_grow_mask_footprints():
    (plus,) = run("GrowMask", _dot(), 1, True)
    ys, xs = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    l1, linf = (ys - 2).abs() + (xs - 2).abs(), torch.maximum((ys - 2).abs(), (xs - 2).abs())
    assert torch.equal(plus[0], (l1 <= 1).float())
    (square,) = run("GrowMask", _dot(), 1, False)
    assert torch.equal(square[0], (linf <= 1).float())
    (diamond,) = run("GrowMask", _dot(), 2, True)
    assert torch.equal(diamond[0], (l1 <= 2).float())
    (shrunk,) = run("GrowMask", (linf <= 1).float()[None], -1, False)
    assert torch.equal(shrunk, _dot())
    (full,) = run("GrowMask", torch.ones(1, 3, 3), -2, True)  # the border does not erode
    assert (full == 1).all()


def test_grow_mask_matches_scipy_grey_morphology():
    from scipy import ndimage
    torch.manual_seed(1)
    masks = torch.rand(2, 7, 9)
    for tapered in (True, False):
        corner = 0 if tapered else 1
        footprint = np.array([[corner, 1, corner], [1, 1, 1], [corner, 1, corner]])
        for expand, op in ((2, ndimage.grey_dilation), (-2, ndimage.grey_erosion)):
            expected = []
            for m in masks.numpy():
                for _ in range(abs(expand)):
                    m = op(m, footprint=footprint)
                expected.append(m)
            (out,) = run("GrowMask", masks, expand, tapered)
            assert torch.equal(out, torch.from_numpy(np.stack(expected)))


def test_mask_image_conversions():
    m = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    (image,) = run("MaskToImage", m)
    assert image.shape == (1, 2, 2, 3)
    for c in range(3):
        assert torch.equal(image[0, ..., c], m)
    rgba = torch.rand(2, 3, 4, 4)
    for index, channel in enumerate(["red", "green", "blue", "alpha"]):
        (out,) = run("ImageToMask", rgba, channel)
        assert torch.equal(out, rgba[..., index])


def test_image_color_to_mask_matches_8bit_colour():
    image = torch.zeros(1, 2, 2, 3)
    image[0, 0, 1] = torch.tensor([255, 0, 128]) / 255.0
    image[0, 1, 0] = torch.tensor([255, 0, 127]) / 255.0
    (out,) = run("ImageColorToMask", image, 0xFF0080)
    assert out.tolist() == [[[0.0, 1.0], [0.0, 0.0]]]


def test_image_composite_masked_offsets_masks_and_clips():
    destination, source = torch.zeros(1, 4, 6, 3), torch.ones(1, 2, 2, 3)
    (out,) = run("ImageCompositeMasked", destination, source, 3, 1, False)
    expected = torch.zeros(1, 4, 6, 3)
    expected[:, 1:3, 3:5] = 1.0
    assert torch.equal(out, expected)
    (out,) = run("ImageCompositeMasked", destination, source, 5, 3, False)  # one pixel fits
    assert out.sum() == 3 and (out[0, 3, 5] == 1).all()
    (out,) = run("ImageCompositeMasked", destination, source, 0, 0, False, torch.full((4, 4), 0.25))
    assert torch.allclose(out[:, :2, :2], torch.tensor(0.25)) and out[:, 2:].sum() == 0
    (out,) = run("ImageCompositeMasked", destination, source, 0, 0, True)
    assert (out == 1).all()


def test_image_composite_masked_matches_channels():
    rgba = torch.zeros(1, 2, 2, 4)
    (out,) = run("ImageCompositeMasked", rgba, torch.full((1, 1, 1, 3), 0.5), 0, 0, False)
    assert out[0, 0, 0].tolist() == [0.5, 0.5, 0.5, 1.0] and out[0, 1, 1].tolist() == [0, 0, 0, 0]
    (out,) = run("ImageCompositeMasked", torch.zeros(1, 2, 2, 3), torch.ones(1, 1, 1, 4), 1, 1, False)
    assert out.shape == (1, 2, 2, 3) and out[0, 1, 1].tolist() == [1, 1, 1]


def test_latent_composite_masked_in_latent_pixels_with_batch_cycling():
    destination = {"samples": torch.zeros(2, 4, 4, 4), "batch_index": [0, 1]}
    source = {"samples": torch.ones(1, 4, 2, 2)}
    (out,) = run("LatentCompositeMasked", destination, source, 16, 8, False, torch.full((1, 16, 16), 0.5))
    expected = torch.zeros(2, 4, 4, 4)
    expected[..., 1:3, 2:4] = 0.5
    assert torch.equal(out["samples"], expected) and out["batch_index"] == [0, 1]


def test_split_and_join_alpha_round_trip():
    rgba = torch.rand(2, 3, 4, 4)
    image, alpha_mask = run("SplitImageWithAlpha", rgba)
    assert torch.equal(image, rgba[..., :3]) and torch.allclose(alpha_mask, 1 - rgba[..., 3])
    (joined,) = run("JoinImageWithAlpha", image, alpha_mask)
    torch.testing.assert_close(joined, rgba)
    image, alpha_mask = run("SplitImageWithAlpha", torch.rand(1, 2, 2, 3))
    assert not alpha_mask.any()
    # A mask of another size is resized; the batch is the shorter of the two.
    (joined,) = run("JoinImageWithAlpha", torch.rand(3, 4, 4, 3), torch.ones(2, 2))
    assert joined.shape == (1, 4, 4, 4) and not joined[..., 3].any()


def porter_duff(mode, src, src_mask, dst, dst_mask):
    node = mask.PorterDuffImageComposite()
    return node.execute(src, src_mask, dst, dst_mask, mode)


def solid(value, channels=3, size=2):
    return torch.full((1, size, size, channels), value)


def test_porter_duff_modes():
    half_transparent, opaque = torch.full((1, 2, 2), 0.5), torch.zeros(1, 2, 2)
    # Source over: colour 1 at alpha 0.5 over opaque black gives 0.5 grey, opaque.
    image, out_mask = porter_duff("SRC_OVER", solid(1.0), half_transparent, solid(0.0), opaque)
    torch.testing.assert_close(image, solid(0.5))
    torch.testing.assert_close(out_mask, opaque)
    image, out_mask = porter_duff("DST", solid(1.0), opaque, solid(0.2), half_transparent)
    torch.testing.assert_close(image, solid(0.2))
    torch.testing.assert_close(out_mask, half_transparent)
    image, out_mask = porter_duff("CLEAR", solid(1.0), opaque, solid(0.2), opaque)
    assert not image.any() and (out_mask == 1).all()
    image, out_mask = porter_duff("XOR", solid(1.0), opaque, solid(0.2), opaque)  # both opaque: nothing left
    assert not image.any() and (out_mask == 1).all()
    image, _ = porter_duff("MULTIPLY", solid(0.5), opaque, solid(0.4), opaque)
    torch.testing.assert_close(image, solid(0.2))
    image, _ = porter_duff("SCREEN", solid(0.5), opaque, solid(0.4), opaque)
    torch.testing.assert_close(image, solid(0.7))
    # The source is resized to the destination; the batch is the shortest input's.
    image, out_mask = porter_duff("SRC", solid(0.3, size=4), torch.zeros(1, 4, 4), solid(0.0).repeat(2, 1, 1, 1),
                                  torch.zeros(2, 2, 2))
    assert image.shape == (1, 2, 2, 3) and out_mask.shape == (1, 2, 2)
    torch.testing.assert_close(image, solid(0.3))


def test_mask_preview_saves_grey_temp_png(tmp_path, monkeypatch):
    dirs = {kind: tmp_path / kind for kind in ("input", "output", "temp", "user")}
    monkeypatch.setattr(folders, "_active", folders.Folders(tmp_path, input_dir=dirs["input"],
                                                            output_dir=dirs["output"], temp_dir=dirs["temp"],
                                                            user_dir=dirs["user"]))
    result = run("MaskPreview", torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
    (entry,) = result["ui"]["images"]
    assert entry["type"] == "temp" and entry["filename"].startswith("ComfyUI_temp_")
    saved = np.array(Image.open(dirs["temp"] / entry["filename"]))
    assert saved.shape == (2, 2, 3)
    assert saved[..., 0].tolist() == [[0, 127], [255, 63]]


@pytest.fixture
def registry(settings):
    reg = build_registry(settings)
    for module in (latent, conditioning, mask):
        reg.register_module(module)
    reg.register_module(testnodes, python_module="tests")
    return reg


async def test_mask_prompt_through_the_app(client, settings):
    prompt = {
        "1": {"class_type": "SolidMask", "inputs": {"value": 0.25, "width": 6, "height": 4}},
        "2": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 2, "height": 1}},
        "3": {"class_type": "MaskComposite", "inputs": {"destination": ["1", 0], "source": ["2", 0], "x": 2, "y": 1,
                                                         "operation": "add"}},
        "4": {"class_type": "GrowMask", "inputs": {"mask": ["3", 0], "expand": 1, "tapered_corners": False}},
        "5": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 0]}},
        "6": {"class_type": "PorterDuffImageComposite", "inputs": {
            "source": ["5", 0], "source_alpha": ["1", 0], "destination": ["5", 0], "destination_alpha": ["1", 0],
            "mode": "SRC"}},
        "7": {"class_type": "MaskPreview", "inputs": {"mask": ["4", 0]}},
        "8": {"class_type": "MaskPreview", "inputs": {"mask": ["6", 1]}},
    }
    _, messages = await run_prompt(client, prompt)
    assert of_type(messages, "execution_error") == []
    previews = {}
    for executed in of_type(messages, "executed"):
        (entry,) = executed["output"]["images"]
        previews[executed["node"]] = np.array(Image.open(settings.base_directory / "temp" / entry["filename"]))
    # The 2 x 1 block at (2, 1) grown by one pixel each way (square footprint) over a 0.25 background.
    expected = np.full((4, 6), 63)
    expected[0:3, 1:5] = 255
    assert previews["7"][..., 0].tolist() == expected.tolist()
    # SRC keeps the source's alpha: the 0.25 mask again.
    assert (previews["8"] == 63).all()
