import pytest

from engine.text.prompt_weights import WeightedText, parse_prompt_weights, split_groups


def runs(text, **kwargs):
    return [(r.text, r.weight) for r in parse_prompt_weights(text, **kwargs)]


def test_plain_text_is_one_run_at_weight_one():
    assert runs("a photo of a cat") == [("a photo of a cat", 1.0)]


def test_parentheses_multiply_by_1_1_and_nest():
    assert runs("a (b) c") == [("a ", 1.0), ("b", pytest.approx(1.1)), (" c", 1.0)]
    assert runs("((b))") == [("b", pytest.approx(1.1 * 1.1))]
    assert runs("(((b)))") == [("b", pytest.approx(1.1**3))]


def test_explicit_weight_replaces_the_surrounding_weight():
    assert runs("(b:1.5)") == [("b", 1.5)]
    # ComfyUI sets, rather than multiplies, an explicit weight, even inside emphasis.
    assert runs("((b:1.5))") == [("b", 1.5)]
    assert runs("(a (b:0.5))") == [("a ", pytest.approx(1.1)), ("b", 0.5)]
    assert runs("((a:1.2) b)") == [("a", 1.2), (" b", pytest.approx(1.1))]


def test_weight_is_read_after_the_last_colon():
    assert runs("(a:1.2:1.3)") == [("a:1.2", 1.3)]
    assert runs("(a:b)") == [("a:b", pytest.approx(1.1))]
    # A colon at the very start is text, not a weight.
    assert runs("(:1.5)") == [(":1.5", pytest.approx(1.1))]
    assert runs("(a: 2 )") == [("a", 2.0)]
    assert runs("(a:-1)") == [("a", -1.0)]


def test_square_brackets_are_plain_text():
    assert runs("a [b] [[c]]") == [("a [b] [[c]]", 1.0)]


def test_escaped_parentheses_are_literal():
    assert runs(r"\(b\)") == [("(b)", 1.0)]
    assert runs(r"(a \(b\):1.4)") == [("a (b)", 1.4)]


def test_unbalanced_parentheses_stay_text():
    assert runs("a (b") == [("a ", 1.0), ("(b", 1.0)]
    # A stray ")" leaves the depth negative, so later groups are never closed and stay text too.
    assert runs("a) b") == [("a) b", 1.0)]
    assert runs("a) (b)") == [("a) (b)", 1.0)]
    assert runs("()") == []


def test_weights_can_be_disabled():
    assert runs(r"(a:1.5) \(x\)", parse_weights=False) == [("(a:1.5) (x)", 1.0)]


def test_split_groups():
    assert split_groups("x (a (b)) y (c)") == ["x ", "(a (b))", " y ", "(c)"]


def test_runs_are_dataclasses():
    assert parse_prompt_weights("a") == [WeightedText("a", 1.0)]
