"""T5-XXL prompt tokens for Flux against transformers' T5TokenizerFast on the same vocabulary file."""
from __future__ import annotations

import gzip

import pytest
import transformers

from engine.text.encode import empty_window
from engine.text.profiles import SD1_CLIP_L, T5_XXL
from engine.text.prompt_tokens import tokenize_prompt
from engine.text.t5_tokenizer import DATA

PLAIN = [
    "a photo of a cat",
    "A cinematic shot: a red fox, jumping over 3 logs; at 5:45pm -- 100% sharp!",
    "3.14159 2,000,000 1st 22nd 2024-12-07",
    "naïve café — 日本語の文字 😀 Straße Ελληνικά",
    "  leading and   repeated   spaces\nnew line\ttab  ",
    "escaped \\(parentheses\\) stay text",
    "",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """transformers' fast T5 tokenizer (what ComfyUI runs) on the vendored tokenizer.json."""
    path = tmp_path_factory.mktemp("t5") / "tokenizer.json"
    path.write_bytes(gzip.decompress((DATA / "t5_tokenizer.json.gz").read_bytes()))
    return transformers.T5TokenizerFast(tokenizer_file=str(path), legacy=False)


def ids_and_weights(text: str):
    (chunk,) = tokenize_prompt(text, T5_XXL)
    return chunk.tokens, chunk.weights


@pytest.mark.parametrize("text", PLAIN)
def test_plain_prompt_is_the_tokenizer_call_padded_to_256(reference, text):
    expected = reference(text.replace("\\(", "(").replace("\\)", ")"))["input_ids"]
    assert expected[-1] == 1  # the tokenizer's own </s>
    tokens, weights = ids_and_weights(text)
    assert tokens == expected + [0] * (256 - len(expected))
    assert weights == [1.0] * 256


def test_empty_prompt_is_end_token_then_padding():
    assert ids_and_weights("")[0] == [1] + [0] * 255
    assert empty_window(T5_XXL, 5) == [1, 0, 0, 0, 0]


def test_long_prompt_is_one_unpadded_sequence(reference):
    text = " ".join(f"subject{i}, detailed" for i in range(120))
    expected = reference(text)["input_ids"]
    assert len(expected) > 256
    tokens, weights = ids_and_weights(text)
    assert tokens == expected and weights == [1.0] * len(expected)


def test_weighted_runs_are_tokenized_alone_without_their_end_token(reference):
    runs = [("a ", 1.0), ("red", 1.5), (" cat, ", 1.0), ("big", 1.1 * 1.1), (" and ", 1.0), ("sleepy", 1.1)]
    tokens, weights = ids_and_weights("a (red:1.5) cat, ((big)) and (sleepy)")
    expected_ids, expected_weights = [], []
    for text, weight in runs:
        ids = reference(text)["input_ids"][:-1]
        expected_ids += ids
        expected_weights += [weight] * len(ids)
    assert tokens[:len(expected_ids) + 1] == expected_ids + [1]
    assert tokens[len(expected_ids) + 1:] == [0] * (256 - len(expected_ids) - 1)
    assert weights[:len(expected_weights)] == pytest.approx(expected_weights)
    assert weights[len(expected_weights):] == [1.0] * (256 - len(expected_weights))
    # Each run alone starts a word, even inside one: "photo(graph:1.2)" is not the tokens of "photograph".
    split = ids_and_weights("photo(graph:1.2)")[0]
    assert split[:split.index(1)] == reference("photo")["input_ids"][:-1] + reference("graph")["input_ids"][:-1]
    assert split[:split.index(1) + 1] != reference("photograph")["input_ids"]


def test_clip_windows_unchanged_by_the_generalisation():
    (chunk,) = tokenize_prompt("a cat", SD1_CLIP_L)
    assert len(chunk) == 77 and chunk.tokens[0] == 49406 and chunk.tokens[3:] == [49407] * 74
