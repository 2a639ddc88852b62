"""String nodes and PreviewAny: upstream's declarations and the edge cases its golden texts
(tests/e2e/test_parity.py) do not reach."""
from __future__ import annotations

import pytest
import torch

from nodes import strings
from tests.nodes.test_latent_nodes import assert_matches_capture


@pytest.mark.parametrize("name", sorted(strings.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(strings, name)


def test_an_invalid_pattern_matches_and_extracts_nothing():
    assert strings.RegexMatch().run("abc", "(", True, False, False) == (False,)
    assert strings.RegexExtract().run("abc", "[", "All Matches", True, False, False, 1) == ("",)


def test_a_group_beyond_the_patterns_groups_extracts_nothing():
    assert strings.RegexExtract().run("a1 b2", "([a-z])\\d", "First Group", True, False, False, 2) == ("",)
    assert strings.RegexExtract().run("a1 b2", "([a-z])(\\d)", "All Groups", True, False, False, 2) == ("1\n2",)


@pytest.mark.parametrize("value, text", [(None, "None"), (3, "3"), (2.5, "2.5"), (True, "True"), ("x", "x"),
                                         ({"a": [1, 2]}, '{"a": [1, 2]}')])
def test_preview_any_shows_values_as_upstream(value, text):
    assert strings.PreviewAny().main(value) == {"ui": {"text": (text,)}}


def test_preview_any_falls_back_to_str_for_what_json_cannot_hold():
    assert strings.PreviewAny().main(torch.tensor([1.0]))["ui"]["text"] == ("tensor([1.])",)
