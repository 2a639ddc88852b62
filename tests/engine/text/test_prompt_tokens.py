import logging

import pytest
import torch

from engine.text.clip_tokenizer import END_ID, START_ID, clip_tokenizer
from engine.text.profiles import SD1_CLIP_L, SD2_CLIP_H, SDXL_CLIP_G, SDXL_CLIP_L
from engine.text.prompt_tokens import (
    Chunk,
    find_embedding,
    pack_chunks,
    split_embedding_words,
    tokenize_prompt,
)

A, PHOTO, OF, CAT = 320, 1125, 539, 2368


def ids(chunk: Chunk):
    return [t if isinstance(t, int) else "vec" for t in chunk.tokens]


def test_single_chunk_layout_per_encoder():
    content = [A, PHOTO, OF, A, CAT]
    for profile, pad in [(SD1_CLIP_L, END_ID), (SDXL_CLIP_L, END_ID), (SDXL_CLIP_G, 0), (SD2_CLIP_H, 0)]:
        (chunk,) = tokenize_prompt("a photo of a cat", profile)
        assert chunk.tokens == [START_ID, *content, END_ID] + [pad] * (77 - 7)
        assert chunk.weights == [1.0] * 77


def test_weights_follow_their_tokens():
    (chunk,) = tokenize_prompt("a (photo:1.2) of ((a cat))", SD1_CLIP_L)
    assert chunk.tokens[:7] == [START_ID, A, PHOTO, OF, A, CAT, END_ID]
    assert chunk.weights[:7] == [1.0, 1.0, 1.2, 1.0, pytest.approx(1.21), pytest.approx(1.21), 1.0]
    assert set(chunk.weights[7:]) == {1.0}


def test_empty_prompt_is_one_window():
    (chunk,) = tokenize_prompt("", SD1_CLIP_L)
    assert chunk.tokens == [START_ID, END_ID] + [END_ID] * 75


def test_75_tokens_fill_one_window_exactly():
    chunks = tokenize_prompt("a " * 75, SD1_CLIP_L)
    assert len(chunks) == 1
    assert chunks[0].tokens == [START_ID] + [A] * 75 + [END_ID]


def test_long_run_is_cut_at_the_window_edge():
    chunks = tokenize_prompt("cat " + "(" + "a " * 80 + ":1.2)", SDXL_CLIP_G)
    assert [len(c) for c in chunks] == [77, 77]
    assert chunks[0].tokens == [START_ID, CAT] + [A] * 74 + [END_ID]
    assert chunks[1].tokens == [START_ID] + [A] * 6 + [END_ID] + [0] * 69
    assert chunks[1].weights[1:7] == [1.2] * 6


def test_short_run_moves_whole_to_the_next_window():
    # 73 tokens, then a 3-token run that would need 77 slots: the window is closed, end + padding.
    chunks = tokenize_prompt("a " * 73 + "(photo of cat:1.3)", SD1_CLIP_L)
    assert chunks[0].tokens == [START_ID] + [A] * 73 + [END_ID] + [END_ID] * 2
    assert chunks[1].tokens[:5] == [START_ID, PHOTO, OF, CAT, END_ID]
    assert chunks[1].weights[1:4] == [1.3] * 3


def test_pack_chunks_boundary_rule_uses_run_length_8():
    seven = [(A, 1.0)] * 7
    eight = [(A, 1.0)] * 8
    filler = [(CAT, 1.0)] * 70
    kept_whole = pack_chunks([filler, seven], SD1_CLIP_L)
    assert [t for t in kept_whole[1].tokens[:9]] == [START_ID] + [A] * 7 + [END_ID]
    cut = pack_chunks([filler, eight], SD1_CLIP_L)
    assert cut[0].tokens[71:] == [A] * 5 + [END_ID]
    assert cut[1].tokens[:5] == [START_ID, A, A, A, END_ID]


def test_plain_words_are_one_run_even_with_many_words():
    # ComfyUI only splits a weighted run around embeddings, so a long unweighted prompt is a single (splittable) run.
    chunks = tokenize_prompt("a " * 70 + "photo of a cat and dog", SD1_CLIP_L)
    assert chunks[0].tokens[70:77] == [A, PHOTO, OF, A, CAT, 537, END_ID]


# --- textual inversion ---------------------------------------------------------------------------------------

FOO = torch.arange(6, dtype=torch.float32).reshape(2, 3)
BAR = torch.tensor([9.0, 9.0, 9.0])


def lookup(name):
    return {"foo": FOO, "bar": BAR, "bar.pt": BAR}.get(name)


def test_split_embedding_words():
    assert split_embedding_words("a embedding:x b\nembedding:y") == ["a", "embedding:x b", "embedding:y"]
    assert split_embedding_words("embedding:x") == ["embedding:x"]
    assert split_embedding_words("catembedding:x") == ["catembedding:x"]


def test_find_embedding_trailing_commas():
    vectors, rest = find_embedding("foo,, cat", lookup)
    assert vectors is FOO and rest == ",, cat"
    vectors, rest = find_embedding("foo cat  dog", lookup)
    assert vectors is FOO and rest == "cat dog"
    assert find_embedding("", lookup) == (None, "")


def test_embedding_vectors_are_spliced_with_the_run_weight():
    (chunk,) = tokenize_prompt("a embedding:foo cat (embedding:bar.pt:1.5)", SD1_CLIP_L, lookup)
    assert ids(chunk)[:7] == [START_ID, A, "vec", "vec", CAT, "vec", END_ID]
    assert torch.equal(chunk.tokens[2], FOO[0]) and torch.equal(chunk.tokens[3], FOO[1])
    assert torch.equal(chunk.tokens[5], BAR)
    assert chunk.weights[:7] == [1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 1.0]


def test_embedding_then_comma_keeps_the_comma():
    (chunk,) = tokenize_prompt("embedding:foo, cat", SD1_CLIP_L, lookup)
    comma = clip_tokenizer().encode(",")
    assert ids(chunk)[:6] == [START_ID, "vec", "vec", *comma, CAT, END_ID]


def test_unknown_embedding_is_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        (chunk,) = tokenize_prompt("a embedding:nope cat", SD1_CLIP_L, lookup)
    assert chunk.tokens[:4] == [START_ID, A, CAT, END_ID]
    assert "embedding:nope cat does not exist" in caplog.text


def test_without_lookup_embedding_text_is_tokenized():
    (chunk,) = tokenize_prompt("a embedding:foo", SD1_CLIP_L)
    expected = clip_tokenizer().encode("a") + clip_tokenizer().encode("embedding:foo")
    assert chunk.tokens[1 : 1 + len(expected)] == expected
