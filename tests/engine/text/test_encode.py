import copy

import pytest
import torch
import transformers

from engine.text.clip_tokenizer import END_ID, START_ID
from engine.text.encode import (
    Conditioning,
    apply_weights,
    empty_window,
    encode_chunks,
    encode_prompt,
    join_encoders,
)
from engine.text.hf_encoder import HFClipEncoder, LayerChoice, choose_layer, prepare_window
from engine.text.profiles import SD1_CLIP_L, SD2_CLIP_H, SDXL_CLIP_G, SDXL_CLIP_L
from engine.text.prompt_tokens import Chunk, tokenize_prompt

DIM = 32


def tiny_config():
    return transformers.CLIPTextConfig(
        vocab_size=49408,
        hidden_size=DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=DIM,
        eos_token_id=END_ID,
        bos_token_id=START_ID,
    )


def randomize(model):
    # Non-trivial layer norms so that "with / without final norm" really differ.
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "layer_norm" in name and name.endswith("weight") else 0.0, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def text_model():
    return randomize(transformers.CLIPTextModel(tiny_config()))


@pytest.fixture(scope="module")
def projection_model():
    return randomize(transformers.CLIPTextModelWithProjection(tiny_config()))


def direct(model, ids):
    """The model's own outputs for a batch of id windows."""
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), output_hidden_states=True)


def core(model):
    return getattr(model, "text_model", model)


# --- layer choice ---------------------------------------------------------------------------------------------


def test_choose_layer():
    assert choose_layer(SD1_CLIP_L, 12) == LayerChoice(11, final_norm=True)
    assert choose_layer(SD1_CLIP_L, 12, -2) == LayerChoice(10, final_norm=True)
    assert choose_layer(SD2_CLIP_H, 24) == LayerChoice(22, final_norm=True)
    assert choose_layer(SDXL_CLIP_G, 32) == LayerChoice(30, final_norm=False)
    assert choose_layer(SDXL_CLIP_L, 12, -1) == LayerChoice(11, final_norm=False)
    assert choose_layer(SDXL_CLIP_L, 12, -12) == LayerChoice(0, final_norm=False)
    # Deeper than the model: fall back to the final (normed) output.
    assert choose_layer(SDXL_CLIP_L, 12, -13) == LayerChoice(11, final_norm=True)
    assert choose_layer(SD1_CLIP_L, 12, 3) == LayerChoice(3, final_norm=True)
    with pytest.raises(ValueError):
        choose_layer(SD1_CLIP_L, 12, 12)


@pytest.mark.parametrize(
    "profile, layer_idx, hidden_index, normed",
    [
        (SD1_CLIP_L, None, -1, True),
        (SD1_CLIP_L, -1, -1, True),
        (SD1_CLIP_L, -2, -2, True),
        (SD1_CLIP_L, -5, -1, True),
        (SDXL_CLIP_L, None, -2, False),
        (SDXL_CLIP_L, -1, -1, False),
        (SD2_CLIP_H, None, -2, True),
    ],
)
def test_clip_skip_reads_the_right_layer(text_model, profile, layer_idx, hidden_index, normed):
    (chunk,) = tokenize_prompt("a photo of a cat", profile)
    cond = encode_chunks([chunk], HFClipEncoder(text_model, profile, layer_idx), profile).cond
    out = direct(text_model, [chunk.tokens])
    expected = out.hidden_states[hidden_index]
    if normed:
        expected = core(text_model).final_layer_norm(expected)
    assert cond.shape == (1, 77, DIM)
    torch.testing.assert_close(cond, expected)
    if normed and hidden_index == -1:
        torch.testing.assert_close(cond, out.last_hidden_state)


def test_sdxl_last_layer_is_not_normed(text_model):
    (chunk,) = tokenize_prompt("a cat", SDXL_CLIP_L)
    cond = encode_chunks([chunk], HFClipEncoder(text_model, SDXL_CLIP_L, -1), SDXL_CLIP_L).cond
    assert not torch.allclose(cond, direct(text_model, [chunk.tokens]).last_hidden_state)


# --- pooled output --------------------------------------------------------------------------------------------


def test_pooled_unprojected_matches_transformers_for_end_padding(text_model):
    (chunk,) = tokenize_prompt("a photo of a cat", SD1_CLIP_L)
    result = encode_chunks([chunk], HFClipEncoder(text_model, SD1_CLIP_L), SD1_CLIP_L)
    # transformers pools at the first end token; padding with the end id must not move it.
    torch.testing.assert_close(result.pooled, direct(text_model, [chunk.tokens]).pooler_output)
    assert result.pooled.shape == (1, DIM)


def test_pooled_projected_matches_transformers_for_zero_padding(projection_model):
    (chunk,) = tokenize_prompt("a photo of a cat", SDXL_CLIP_G)
    assert chunk.tokens[-1] == 0
    result = encode_chunks([chunk], HFClipEncoder(projection_model, SDXL_CLIP_G), SDXL_CLIP_G)
    torch.testing.assert_close(result.pooled, direct(projection_model, [chunk.tokens]).text_embeds)
    unprojected = HFClipEncoder(projection_model, SDXL_CLIP_G, projected_pooled=False)([chunk.tokens])[1]
    at_end = direct(projection_model, [chunk.tokens]).last_hidden_state[:, chunk.tokens.index(END_ID)]
    torch.testing.assert_close(unprojected, at_end)


def test_pooled_comes_from_the_first_chunk(text_model):
    chunks = tokenize_prompt("(cat:1.2) " + "a " * 90, SD1_CLIP_L)
    assert len(chunks) == 2
    result = encode_chunks(chunks, HFClipEncoder(text_model, SD1_CLIP_L), SD1_CLIP_L)
    torch.testing.assert_close(result.pooled, direct(text_model, [chunks[0].tokens]).pooler_output)


# --- weights --------------------------------------------------------------------------------------------------


def test_weight_formula_against_direct_computation(text_model):
    profile = SD1_CLIP_L
    (chunk,) = tokenize_prompt("a (photo:1.5) of (cat:0.5)", profile)
    cond = encode_chunks([chunk], HFClipEncoder(text_model, profile), profile).cond[0]
    empty = [START_ID, END_ID] + [END_ID] * 75
    out = direct(text_model, [chunk.tokens, empty]).last_hidden_state
    z, z_empty = out[0], out[1]
    for j, w in enumerate(chunk.weights):
        expected = (z[j] - z_empty[j]) * w + z_empty[j] if w != 1.0 else z[j]
        torch.testing.assert_close(cond[j], expected)
    assert chunk.weights[2] == 1.5 and chunk.weights[4] == 0.5


def test_apply_weights_leaves_weight_one_untouched():
    z = torch.randn(4, 3)
    z_empty = torch.randn(4, 3)
    out = apply_weights(z, z_empty, [1.0, 2.0, 1.0, 0.0])
    assert torch.equal(out[0], z[0]) and torch.equal(out[2], z[2])
    torch.testing.assert_close(out[1], 2 * z[1] - z_empty[1])
    torch.testing.assert_close(out[3], z_empty[3])


class Recorder:
    """Fake encoder: hidden state = token id broadcast, pooled = row index; remembers the windows it saw."""

    def __init__(self):
        self.calls = []

    def __call__(self, windows):
        self.calls.append(windows)
        hidden = torch.tensor([[float(t) for t in w] for w in windows]).unsqueeze(-1).repeat(1, 1, 2)
        return hidden, torch.arange(len(windows), dtype=torch.float32).unsqueeze(-1)


def test_empty_prompt_is_encoded_only_when_weights_differ_from_one():
    recorder = Recorder()
    encode_chunks(tokenize_prompt("a cat", SD1_CLIP_L), recorder, SD1_CLIP_L)
    assert len(recorder.calls[0]) == 1
    encode_chunks(tokenize_prompt("a (cat:1.1)", SDXL_CLIP_G), recorder, SDXL_CLIP_G)
    assert len(recorder.calls[1]) == 2
    assert recorder.calls[1][1] == [START_ID, END_ID] + [0] * 75


def test_empty_window_per_profile():
    assert empty_window(SD1_CLIP_L, 5) == [START_ID, END_ID, END_ID, END_ID, END_ID]
    assert empty_window(SD2_CLIP_H, 4) == [START_ID, END_ID, 0, 0]


def test_chunks_concatenate_along_tokens():
    recorder = Recorder()
    chunks = tokenize_prompt("(a:1.3) " * 100, SD1_CLIP_L)
    result = encode_chunks(chunks, recorder, SD1_CLIP_L)
    assert result.cond.shape == (1, 77 * len(chunks), 2)
    assert result.pooled.tolist() == [[0.0]]
    # Recorder's hidden state is the id itself, so unweighted positions (start/end/pad) read back their ids.
    assert result.cond[0, 77, 0].item() == START_ID


def test_no_chunks_gives_the_empty_prompt():
    result = encode_chunks([], Recorder(), SD1_CLIP_L)
    assert result.cond[0, :, 0].tolist() == [START_ID, END_ID]


# --- textual inversion ----------------------------------------------------------------------------------------


def test_embedding_splice_equals_a_token_with_that_embedding(text_model):
    vector = torch.randn(DIM)
    chunk = Chunk([START_ID, 320, vector, 2368, END_ID] + [END_ID] * 72, [1.0] * 77)
    cond = encode_chunks([chunk], HFClipEncoder(text_model, SD1_CLIP_L), SD1_CLIP_L).cond
    # Same thing by hand: give a spare vocabulary entry the vector and use its id.
    patched = copy.deepcopy(text_model)
    spare = 40000
    with torch.no_grad():
        patched.get_input_embeddings().weight[spare] = vector
    expected = direct(patched, [[START_ID, 320, spare, 2368, END_ID] + [END_ID] * 72]).last_hidden_state
    torch.testing.assert_close(cond, expected)


def test_wrong_width_embedding_is_dropped_and_window_repadded(text_model, caplog):
    chunk = Chunk([START_ID, 320, torch.randn(DIM + 1), 2368, END_ID] + [0] * 72, [1.0] * 77)
    encoder = HFClipEncoder(text_model, SDXL_CLIP_G)
    cond = encode_chunks([chunk], encoder, SDXL_CLIP_G).cond
    expected = encode_chunks([Chunk([START_ID, 320, 2368, END_ID] + [0] * 73, [1.0] * 77)], encoder, SDXL_CLIP_G).cond
    torch.testing.assert_close(cond, expected)
    assert "does not match" in caplog.text


def test_prepare_window_pools_at_first_end_even_after_vectors():
    window = [START_ID, torch.zeros(4), torch.zeros(4), END_ID, END_ID, END_ID]
    prepared = prepare_window(window, 4, SD1_CLIP_L)
    assert prepared.pooled_at == 3
    assert [pos for pos, _ in prepared.splices] == [1, 2]
    assert prepared.ids[0] == START_ID and prepared.ids[3:] == [END_ID] * 3


def test_encode_prompt_with_embedding_lookup(text_model):
    vector = torch.randn(2, DIM)
    result = encode_prompt("a (embedding:foo:1.2) cat", HFClipEncoder(text_model, SD1_CLIP_L), SD1_CLIP_L,
                           lambda name: vector if name == "foo" else None)
    assert isinstance(result, Conditioning)
    assert result.cond.shape == (1, 77, DIM) and result.cond.dtype == torch.float32


# --- SDXL ------------------------------------------------------------------------------------------------------


def test_join_encoders_concatenates_features_and_keeps_second_pooled():
    first = Conditioning(torch.zeros(1, 154, 3), torch.zeros(1, 3))
    second = Conditioning(torch.ones(1, 77, 5), torch.ones(1, 5))
    joined = join_encoders(first, second)
    assert joined.cond.shape == (1, 77, 8)
    assert torch.equal(joined.pooled, second.pooled)
    assert joined.cond[..., :3].abs().sum() == 0 and torch.all(joined.cond[..., 3:] == 1)
