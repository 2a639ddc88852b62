"""T5-XXL text encoder files: sizes from shapes, and the conditioning against transformers' T5EncoderModel built
directly from the file's tensors (what diffusers' FluxPipeline computes), float32 on CPU."""
from __future__ import annotations

import gzip

import pytest
import torch
import transformers
from safetensors.torch import load_file

from engine import text
from engine.models.detect import CheckpointError
from engine.models.t5 import detect_t5, is_t5_file, load_t5_file
from engine.text.t5_tokenizer import DATA
from tests.fixtures.checkpoints import write_clip_l
from tests.fixtures.t5 import FULL_FLUX_T5, T5Layout, t5_shapes, write_t5

FULL_PREFIX = "text_encoders.t5xxl.transformer."
PROMPTS = ["a photo of a cat", "A red fox, jumping over 3 logs at 5:45pm!", "naïve café 日本語 😀",
           " ".join(f"subject{i}, detailed" for i in range(120))]


@pytest.mark.parametrize("prefix", ["", FULL_PREFIX])
def test_flux_t5xxl_sizes(prefix):
    spec = detect_t5(t5_shapes(FULL_FLUX_T5, prefix))
    assert (spec.prefix, spec.vocab_size, spec.d_model, spec.d_kv, spec.d_ff, spec.num_layers, spec.num_heads,
            spec.num_buckets, spec.gated) == (prefix, 32128, 4096, 64, 10240, 24, 64, 32, True)


def test_t5_v1_0_is_relu():
    spec = detect_t5(t5_shapes(T5Layout(gated=False)))
    assert not spec.gated and spec.d_ff == 64
    assert detect_t5({"text_model.final_layer_norm.weight": (32,)}) is None


@pytest.fixture(scope="module")
def t5_file(tmp_path_factory):
    return write_t5(tmp_path_factory.mktemp("t5") / "t5xxl_fp16.safetensors")


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("t5tok") / "tokenizer.json"
    path.write_bytes(gzip.decompress((DATA / "t5_tokenizer.json.gz").read_bytes()))
    return transformers.T5TokenizerFast(tokenizer_file=str(path), legacy=False)


def reference_model(tensors: dict[str, torch.Tensor], layout: T5Layout = T5Layout()):
    """T5 v1.1 built directly from a file's tensors, with the config written out by hand."""
    config = transformers.T5Config(vocab_size=32128, d_model=layout.d_model, d_kv=layout.d_kv, d_ff=layout.d_ff,
                                   num_layers=layout.layers, num_heads=layout.heads, feed_forward_proj="gated-gelu",
                                   relative_attention_num_buckets=32, relative_attention_max_distance=128,
                                   layer_norm_epsilon=1e-6)
    model = transformers.T5EncoderModel(config).eval()
    state = {k: v.float() for k, v in tensors.items()}
    state["encoder.embed_tokens.weight"] = state["shared.weight"]
    model.load_state_dict(state, strict=True)
    return model


def run(model, ids: list[int], **kwargs):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), **kwargs)


def padded(ids: list[int]) -> list[int]:
    return ids + [0] * (256 - len(ids))


def encode(model, prompt: str, **kwargs) -> torch.Tensor:
    return text.encode_prompt(prompt, text.T5Encoder(model, text.T5_XXL, **kwargs), text.T5_XXL).cond


@pytest.mark.parametrize("prompt", PROMPTS)
def test_conditioning_is_the_final_hidden_state(t5_file, hf_tokenizer, prompt):
    ours = load_t5_file(t5_file, "cpu", torch.float32)
    assert ours.name == "t5xxl"
    reference = reference_model(load_file(str(t5_file)))
    ids = padded(hf_tokenizer(prompt)["input_ids"])
    expected = run(reference, ids).last_hidden_state
    cond = encode(ours.model, prompt)
    assert cond.shape == (1, max(256, len(ids)), 32) and cond.dtype == torch.float32
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-6)


def test_weighted_prompt_scales_away_from_the_empty_prompt(t5_file):
    ours = load_t5_file(t5_file, "cpu", torch.float32).model
    reference = reference_model(load_file(str(t5_file)))
    (chunk,) = text.tokenize_prompt("a (red:1.5) fox", text.T5_XXL)
    z = run(reference, chunk.tokens).last_hidden_state[0]
    z_empty = run(reference, padded([1])).last_hidden_state[0]
    w = torch.tensor(chunk.weights).unsqueeze(-1)
    assert (w != 1.0).sum() > 0
    expected = torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)
    torch.testing.assert_close(encode(ours, "a (red:1.5) fox")[0], expected, rtol=1e-5, atol=1e-6)


def test_earlier_layer_gets_the_final_norm(t5_file, hf_tokenizer):
    ours = load_t5_file(t5_file, "cpu", torch.float32).model
    reference = reference_model(load_file(str(t5_file)))
    out = run(reference, padded(hf_tokenizer("a cat")["input_ids"]), output_hidden_states=True)
    with torch.no_grad():
        expected = reference.encoder.final_layer_norm(out.hidden_states[1])  # block 0's output
    torch.testing.assert_close(encode(ours, "a cat", layer_idx=-2), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(encode(ours, "a cat", layer_idx=-1), out.last_hidden_state, rtol=1e-5, atol=1e-6)


def test_textual_inversion_vectors_replace_token_embeddings(t5_file):
    ours = load_t5_file(t5_file, "cpu", torch.float32).model
    reference = reference_model(load_file(str(t5_file)))
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    chunks = text.tokenize_prompt("a embedding:thing cat", text.T5_XXL, lambda name: vectors)
    tokens = chunks[0].tokens
    at = [i for i, t in enumerate(tokens) if isinstance(t, torch.Tensor)]
    assert len(at) == 2
    embeds = reference.shared(torch.tensor([[0 if i in at else t for i, t in enumerate(tokens)]])).detach()
    embeds[0, at] = vectors
    with torch.no_grad():
        expected = reference(inputs_embeds=embeds).last_hidden_state
    cond = text.encode_chunks(chunks, text.T5Encoder(ours, text.T5_XXL), text.T5_XXL).cond
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-6)


def test_fp8_file_is_upcast(tmp_path, hf_tokenizer):
    path = write_t5(tmp_path / "t5xxl_fp8_e4m3fn.safetensors", dtype=torch.float8_e4m3fn)
    tensors = load_file(str(path))
    assert tensors["shared.weight"].dtype == torch.float8_e4m3fn
    ours = load_t5_file(path, "cpu", torch.float32).model
    assert ours.shared.weight.dtype == torch.float32
    ids = padded(hf_tokenizer("a cat")["input_ids"])
    torch.testing.assert_close(encode(ours, "a cat"), run(reference_model(tensors), ids).last_hidden_state,
                               rtol=1e-5, atol=1e-6)


def test_scaled_fp8_weights_are_multiplied_by_their_scale(tmp_path, hf_tokenizer):
    path = write_t5(tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors", scaled=True)
    stored = load_file(str(path))
    assert "scaled_fp8" in stored
    dequantized = {k: v.float() * stored[k.removesuffix("weight") + "scale_weight"]
                   if k.removesuffix("weight") + "scale_weight" in stored else v
                   for k, v in stored.items() if "scale" not in k}
    ours = load_t5_file(path, "cpu", torch.float32).model
    original = load_file(str(write_t5(tmp_path / "original.safetensors", dtype=torch.float32)))
    q = "encoder.block.0.layer.0.SelfAttention.q.weight"
    torch.testing.assert_close(ours.state_dict()[q], original[q], rtol=0.07, atol=1e-3)
    ids = padded(hf_tokenizer("a cat")["input_ids"])
    torch.testing.assert_close(encode(ours, "a cat"), run(reference_model(dequantized), ids).last_hidden_state,
                               rtol=1e-5, atol=1e-6)


def test_full_checkpoint_prefix_and_other_files(tmp_path):
    path = write_t5(tmp_path / "flux_checkpoint.safetensors", prefix=FULL_PREFIX)
    assert is_t5_file(path)
    assert load_t5_file(path, "cpu", torch.float32).spec.prefix == FULL_PREFIX
    clip = write_clip_l(tmp_path / "clip_l.safetensors")
    assert not is_t5_file(clip)
    with pytest.raises(CheckpointError, match="not a T5 text encoder"):
        load_t5_file(clip, "cpu", torch.float32)
