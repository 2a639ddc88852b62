"""Latent nodes called directly on tiny tensors, and their declarations against upstream's /object_info."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from nodes import latent
from nodes.registry import NodeRegistry
from tests.upstream import declaration

COMPARED_FIELDS = ("input", "input_order", "output", "output_is_list", "output_name", "display_name", "category",
                   "output_node", "description", "python_module", "output_tooltips", "deprecated", "experimental",
                   "api_node")


def assert_matches_capture(module, name: str) -> None:
    """`name` as our registry describes it equals upstream's /object_info entry, JSON value for JSON value."""
    upstream = declaration(name)
    registry = NodeRegistry()
    registry.register_module(module)
    ours = json.loads(json.dumps(registry.info(name)))
    for field in COMPARED_FIELDS:
        # Dumped, so that 0 and 0.0 or True and 1 still count as different.
        assert json.dumps(ours.get(field), sort_keys=True) == json.dumps(upstream.get(field), sort_keys=True), field


@pytest.mark.parametrize("name", sorted(latent.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(latent, name)


def run(name: str, *args, **kwargs):
    """Call node `name` as the executor does, checking that it left its (deep-copied) inputs untouched."""
    before = copy.deepcopy((args, kwargs))
    node = latent.NODE_CLASS_MAPPINGS[name]()
    out = getattr(node, node.FUNCTION)(*args, **kwargs)
    assert_same(before, (args, kwargs))
    return out


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def ramp(*shape, dtype=torch.float32):
    return torch.arange(torch.Size(shape).numel(), dtype=dtype).reshape(shape)


def test_empty_latent_is_four_channel_zeros_at_one_eighth():
    (out,) = run("EmptyLatentImage", 96, 64, 2)
    assert out.keys() == {"samples"}
    samples = out["samples"]
    assert samples.shape == (2, 4, 8, 12) and samples.dtype == torch.float32
    assert samples.device.type == "cpu" and not samples.any()


def test_upscale_keeps_aspect_for_zero_side_and_enforces_64_pixels():
    samples = {"samples": ramp(1, 4, 8, 16)}  # a 128 x 64 pixel image
    (out,) = run("LatentUpscale", samples, "nearest-exact", 0, 128, "disabled")
    assert out["samples"].shape == (1, 4, 16, 32)  # 256 x 128 pixels
    # An integer factor with nearest-exact repeats each latent pixel.
    assert torch.equal(out["samples"][..., ::2, ::2], samples["samples"])
    (out,) = run("LatentUpscale", samples, "bilinear", 32, 0, "disabled")
    assert out["samples"].shape == (1, 4, 8, 8)  # both sides raised to 64 pixels
    (out,) = run("LatentUpscale", samples, "bilinear", 0, 0, "disabled")
    assert out["samples"] is samples["samples"]


def test_upscale_by_rounds_each_side():
    samples = {"samples": ramp(1, 4, 4, 6), "batch_index": [3]}
    (out,) = run("LatentUpscaleBy", samples, "bilinear", 1.5)
    assert out["samples"].shape == (1, 4, 6, 9) and out["batch_index"] == [3]


def test_composite_pastes_at_offset_and_clips_at_the_edges():
    target = {"samples": torch.zeros(1, 1, 6, 6), "noise_mask": torch.ones(1, 1, 6, 6)}
    source = {"samples": torch.full((1, 1, 3, 3), 7.0)}
    (out,) = run("LatentComposite", target, source, 16, 8, feather=0)
    expected = torch.zeros(1, 1, 6, 6)
    expected[..., 1:4, 2:5] = 7.0
    assert torch.equal(out["samples"], expected)
    assert out["noise_mask"] is target["noise_mask"]
    (out,) = run("LatentComposite", target, source, 40, 0, feather=0)  # x = 5 latent pixels: one column fits
    expected = torch.zeros(1, 1, 6, 6)
    expected[..., 0:3, 5] = 7.0
    assert torch.equal(out["samples"], expected)


def test_composite_feathers_only_edges_inside_the_target():
    target = {"samples": torch.full((1, 2, 8, 8), 2.0)}
    source = {"samples": torch.zeros(1, 2, 4, 4)}
    # Placed at (2, 2) every edge is inside: each axis ramps 1/2, 1, 1, 1/2 (feather 2 latent pixels).
    (out,) = run("LatentComposite", target, source, 16, 16, feather=16)
    ramp2 = torch.tensor([0.5, 1.0, 1.0, 0.5])
    weight = ramp2[:, None] * ramp2[None, :]
    expected = torch.full((1, 2, 8, 8), 2.0)
    expected[..., 2:6, 2:6] = 2.0 * (1 - weight)
    torch.testing.assert_close(out["samples"], expected)
    # At the origin the top and left edges lie on the target's border and stay hard.
    (out,) = run("LatentComposite", target, source, 0, 0, feather=16)
    hard_start = torch.tensor([1.0, 1.0, 1.0, 0.5])
    weight = hard_start[:, None] * hard_start[None, :]
    torch.testing.assert_close(out["samples"][0, 0, :4, :4], 2.0 * (1 - weight))
    assert torch.equal(out["samples"][..., 4:, :], torch.full((1, 2, 4, 8), 2.0))


def test_composite_keeps_dtype():
    target = {"samples": torch.zeros(1, 4, 4, 4, dtype=torch.float64)}
    (out,) = run("LatentComposite", target, {"samples": torch.ones(1, 4, 2, 2, dtype=torch.float64)}, 8, 8, feather=8)
    assert out["samples"].dtype == torch.float64


def test_blend_formula_and_resize_of_second():
    first, second = {"samples": ramp(1, 4, 4, 4)}, {"samples": torch.ones(1, 4, 4, 4)}
    (out,) = run("LatentBlend", first, second, 0.25)
    torch.testing.assert_close(out["samples"], first["samples"] * 0.25 + 0.75)
    (out,) = run("LatentBlend", first, {"samples": torch.ones(1, 4, 2, 2)}, 0.5)
    torch.testing.assert_close(out["samples"], first["samples"] * 0.5 + 0.5)


def test_from_batch_slices_samples_masks_and_indices():
    samples = {"samples": ramp(4, 1, 2, 2), "noise_mask": torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])}
    (out,) = run("LatentFromBatch", samples, 1, 2)
    assert torch.equal(out["samples"], samples["samples"][1:3])
    assert out["batch_index"] == [1, 2]
    # Two masks for four items cycle: items 1 and 2 get masks 1 and 0.
    assert torch.equal(out["noise_mask"], samples["noise_mask"][[1, 0]])
    (out,) = run("LatentFromBatch", dict(samples, batch_index=[10, 11, 12, 13]), 9, 5)
    assert torch.equal(out["samples"], samples["samples"][3:]) and out["batch_index"] == [13]
    single = {"samples": ramp(3, 1, 2, 2), "noise_mask": torch.ones(1, 1, 2, 2)}
    (out,) = run("LatentFromBatch", single, 2, 1)
    assert torch.equal(out["noise_mask"], single["noise_mask"])


def test_repeat_batch_continues_indices_and_repeats_batched_masks():
    samples = {"samples": ramp(2, 1, 2, 2), "batch_index": [2, 3], "noise_mask": ramp(2, 1, 2, 2)}
    (out,) = run("RepeatLatentBatch", samples, 3)
    assert torch.equal(out["samples"], torch.cat([samples["samples"]] * 3))
    assert out["batch_index"] == [2, 3, 4, 5, 6, 7]
    assert torch.equal(out["noise_mask"], torch.cat([samples["noise_mask"]] * 3))
    one_mask = {"samples": ramp(2, 1, 2, 2), "noise_mask": torch.ones(1, 1, 2, 2)}
    (out,) = run("RepeatLatentBatch", one_mask, 2)
    assert out["noise_mask"] is one_mask["noise_mask"] and "batch_index" not in out


def test_set_noise_mask_reshapes_to_batch_channel():
    samples = {"samples": torch.zeros(1, 4, 2, 3)}
    (out,) = run("SetLatentNoiseMask", samples, torch.ones(2, 3))
    assert out["noise_mask"].shape == (1, 1, 2, 3) and "noise_mask" not in samples


def test_crop_divides_by_eight_and_clamps_the_start():
    samples = {"samples": ramp(1, 2, 16, 16)}
    (out,) = run("LatentCrop", samples, 64, 72, 16, 8)
    assert torch.equal(out["samples"], samples["samples"][..., 1:10, 2:10])
    (out,) = run("LatentCrop", samples, 512, 64, 200, 0)  # start pulled back to 8 before the right edge
    assert torch.equal(out["samples"], samples["samples"][..., 0:8, 8:16])


def test_flip_and_rotate():
    grid = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])[None, None]
    (out,) = run("LatentFlip", {"samples": grid}, "x-axis: vertically")
    assert out["samples"][0, 0].tolist() == [[4, 5, 6], [1, 2, 3]]
    (out,) = run("LatentFlip", {"samples": grid}, "y-axis: horizontally")
    assert out["samples"][0, 0].tolist() == [[3, 2, 1], [6, 5, 4]]
    (out,) = run("LatentRotate", {"samples": grid}, "90 degrees")  # clockwise
    assert out["samples"][0, 0].tolist() == [[4, 1], [5, 2], [6, 3]]
    (out,) = run("LatentRotate", {"samples": grid}, "180 degrees")
    assert out["samples"][0, 0].tolist() == [[6, 5, 4], [3, 2, 1]]
    (out,) = run("LatentRotate", {"samples": grid}, "270 degrees")
    assert out["samples"][0, 0].tolist() == [[3, 6], [2, 5], [1, 4]]
    (out,) = run("LatentRotate", {"samples": grid}, "none")
    assert torch.equal(out["samples"], grid)


def test_batch_concatenates_and_resizes_and_joins_indices():
    first = {"samples": ramp(2, 4, 4, 4)}
    second = {"samples": torch.ones(1, 4, 2, 2), "batch_index": [5]}
    (out,) = run("LatentBatch", first, second)
    assert out["samples"].shape == (3, 4, 4, 4)
    assert torch.equal(out["samples"][:2], first["samples"])
    torch.testing.assert_close(out["samples"][2], torch.ones(4, 4, 4))
    assert out["batch_index"] == [0, 1, 5]


def test_add_subtract_multiply():
    first, second = {"samples": ramp(2, 4, 2, 2)}, {"samples": torch.full((1, 4, 2, 2), 3.0)}
    (out,) = run("LatentAdd", first, second)
    assert torch.equal(out["samples"], first["samples"] + 3)  # the single item is repeated over the batch
    (out,) = run("LatentSubtract", first, second)
    assert torch.equal(out["samples"], first["samples"] - 3)
    (out,) = run("LatentMultiply", first, -0.5)
    assert torch.equal(out["samples"], first["samples"] * -0.5)
    (out,) = run("LatentAdd", first, {"samples": torch.ones(1, 4, 1, 1)})  # resized to 2 x 2 first
    torch.testing.assert_close(out["samples"], first["samples"] + 1)


def test_interpolate_mixes_directions_and_magnitudes_per_pixel():
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    ratio = 0.3
    (out,) = run("LatentInterpolate", {"samples": a}, {"samples": b}, ratio)
    expected = torch.empty_like(a)
    for i in range(2):
        for y in range(3):
            for x in range(3):
                va, vb = a[i, :, y, x], b[i, :, y, x]
                mixed = va / va.norm() * ratio + vb / vb.norm() * (1 - ratio)
                expected[i, :, y, x] = mixed / mixed.norm() * (va.norm() * ratio + vb.norm() * (1 - ratio))
    torch.testing.assert_close(out["samples"], expected)
    (out,) = run("LatentInterpolate", {"samples": a}, {"samples": b}, 1.0)
    torch.testing.assert_close(out["samples"], a)
    (out,) = run("LatentInterpolate", {"samples": torch.zeros(1, 4, 2, 2)}, {"samples": torch.zeros(1, 4, 2, 2)}, 0.5)
    assert not out["samples"].isnan().any()


def test_concat_axes_and_order():
    first, second = {"samples": ramp(2, 1, 2, 3)}, {"samples": -ramp(1, 1, 2, 3)}
    (out,) = run("LatentConcat", first, second, "x")
    assert out["samples"].shape == (2, 1, 2, 6)
    assert torch.equal(out["samples"][..., 3:], second["samples"].expand(2, 1, 2, 3))
    (out,) = run("LatentConcat", first, second, "-y")
    assert out["samples"].shape == (2, 1, 4, 3)
    assert torch.equal(out["samples"][..., 2:, :], first["samples"])


def test_cut_clamps_index_and_amount():
    samples = {"samples": ramp(1, 1, 2, 5)}
    (out,) = run("LatentCut", samples, "x", 1, 2)
    assert torch.equal(out["samples"], samples["samples"][..., 1:3])
    (out,) = run("LatentCut", samples, "x", -2, 5)
    assert torch.equal(out["samples"], samples["samples"][..., 3:])
    (out,) = run("LatentCut", samples, "y", 7, 3)
    assert torch.equal(out["samples"], samples["samples"][..., 1:, :])


def test_seed_behavior():
    samples = {"samples": torch.zeros(3, 4, 1, 1), "batch_index": [4, 5, 6]}
    (out,) = run("LatentBatchSeedBehavior", samples, "fixed")
    assert out["batch_index"] == [4, 4, 4]
    (out,) = run("LatentBatchSeedBehavior", {"samples": samples["samples"]}, "fixed")
    assert out["batch_index"] == [0, 0, 0]
    (out,) = run("LatentBatchSeedBehavior", samples, "random")
    assert "batch_index" not in out and samples["batch_index"] == [4, 5, 6]
