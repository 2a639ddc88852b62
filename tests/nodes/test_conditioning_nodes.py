"""Conditioning nodes called directly on tiny conds, and their declarations against upstream's /object_info."""
from __future__ import annotations

import copy
import logging

import pytest
import torch

from nodes import conditioning
from tests.nodes.test_latent_nodes import assert_matches_capture, assert_same


@pytest.mark.parametrize("name", sorted(conditioning.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(conditioning, name)


def run(name: str, *args):
    """Call node `name`, checking that it left its inputs untouched; return its one output."""
    before = copy.deepcopy(args)
    node = conditioning.NODE_CLASS_MAPPINGS[name]()
    (out,) = getattr(node, node.FUNCTION)(*args)
    assert_same(before, args)
    return out


def cond(tokens: int, value: float = 1.0, dim: int = 3, **options):
    return [torch.full((1, tokens, dim), value), options]


def test_combine_joins_the_lists_in_order():
    first, second = [cond(2, 1.0)], [cond(2, 2.0), cond(3, 3.0)]
    out = run("ConditioningCombine", first, second)
    assert [c[0][0, 0, 0].item() for c in out] == [1.0, 2.0, 3.0]


def test_concat_appends_the_first_from_cond_along_tokens(caplog):
    to = [cond(3, 1.0, pooled_output=torch.ones(1, 5)), cond(1, 2.0)]
    from_ = [cond(2, 9.0), cond(4, 8.0)]
    with caplog.at_level(logging.WARNING):
        out = run("ConditioningConcat", to, from_)
    assert "only the first" in caplog.text
    assert [c[0].shape[1] for c in out] == [5, 3]
    assert torch.equal(out[0][0][:, :3], to[0][0]) and torch.equal(out[0][0][:, 3:], from_[0][0])
    assert out[0][1] is not to[0][1] and out[0][1].keys() == {"pooled_output"}


def test_average_weights_conds_and_pads_or_cuts_the_other():
    to = [cond(4, 2.0, pooled_output=torch.full((1, 5), 2.0)), cond(1, 2.0)]
    from_ = [cond(2, 6.0, pooled_output=torch.full((1, 5), 6.0))]
    out = run("ConditioningAverage", to, from_, 0.25)
    first, options = out[0]
    # Tokens 0-1: 0.25 * 2 + 0.75 * 6; tokens 2-3 average against zero padding.
    torch.testing.assert_close(first[:, :2], torch.full((1, 2, 3), 5.0))
    torch.testing.assert_close(first[:, 2:], torch.full((1, 2, 3), 0.5))
    torch.testing.assert_close(options["pooled_output"], torch.full((1, 5), 5.0))
    # A shorter cond takes only as many tokens of the other; a missing pooled output takes the other's.
    second, options = out[1]
    torch.testing.assert_close(second, torch.full((1, 1, 3), 5.0))
    torch.testing.assert_close(options["pooled_output"], torch.full((1, 5), 6.0))


def test_set_area_in_latent_pixels():
    source = [cond(1, mask=torch.ones(1, 2, 2))]
    out = run("ConditioningSetArea", source, 100, 64, 17, 9, 0.5)
    assert out[0][0] is source[0][0]
    assert out[0][1]["area"] == (8, 12, 1, 2)  # (height // 8, width // 8, y // 8, x // 8)
    assert out[0][1]["strength"] == 0.5 and out[0][1]["set_area_to_bounds"] is False
    assert "mask" in out[0][1] and source[0][1].keys() == {"mask"}


def test_set_area_percentage_and_strength():
    out = run("ConditioningSetAreaPercentage", [cond(1)], 0.5, 0.25, 0.1, 0.2, 2.0)
    assert out[0][1] == {"area": ("percentage", 0.25, 0.5, 0.2, 0.1), "strength": 2.0, "set_area_to_bounds": False}
    out = run("ConditioningSetAreaStrength", [cond(1, area=(1, 1, 0, 0))], 3.0)
    assert out[0][1] == {"area": (1, 1, 0, 0), "strength": 3.0}


def test_set_mask_adds_a_batch_dimension_and_bounds_flag():
    mask = torch.ones(4, 6)
    out = run("ConditioningSetMask", [cond(1)], mask, "mask bounds", 0.7)
    options = out[0][1]
    assert options["mask"].shape == (1, 4, 6)
    assert options["set_area_to_bounds"] is True and options["mask_strength"] == 0.7
    out = run("ConditioningSetMask", [cond(1)], torch.ones(2, 4, 6), "default", 1.0)
    assert out[0][1]["mask"].shape == (2, 4, 6) and out[0][1]["set_area_to_bounds"] is False


def test_zero_out_zeroes_cond_and_pooled_output_only():
    source = [cond(2, 3.0, pooled_output=torch.ones(1, 5), strength=0.5), cond(1, 4.0)]
    out = run("ConditioningZeroOut", source)
    assert not out[0][0].any() and out[0][0].shape == (1, 2, 3)
    assert torch.equal(out[0][1]["pooled_output"], torch.zeros(1, 5)) and out[0][1]["strength"] == 0.5
    assert out[1][1] == {}


def test_timestep_range_keys():
    out = run("ConditioningSetTimestepRange", [cond(1, strength=1.0)], 0.2, 0.8)
    assert out[0][1] == {"strength": 1.0, "start_percent": 0.2, "end_percent": 0.8}
