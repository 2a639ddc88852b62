"""T2I style adapter: loading the original-keyed file, its tokens against a hand-written forward pass of the
released architecture, StyleModelApply's "multiply" semantics, the declarations, and one SD1.5 run through the app."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine import folders
from engine.models.clip_vision import ClipVisionOutput
from engine.models.detect import CheckpointError
from engine.models.style_model import StyleAdapterSpec, detect_style_adapter, load_style_model_file
from nodes import style_model
from tests.e2e.test_families import place, run_ok
from tests.e2e.test_txt2img import saved
from tests.fixtures.checkpoints import save, write_sd15
from tests.fixtures.clip_vision import TINY as TINY_VISION, write_clip_vision
from tests.fixtures.style_models import FULL, TINY, style_shapes, style_state_dict, write_style_model
from tests.nodes.test_latent_nodes import assert_matches_capture, assert_same

HEADS = 8  # ComfyUI's head count for every style adapter


def reference_tokens(sd: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    """The style adapter written out op by op: queries after the image tokens, pre-norm attention + quick-GELU
    MLP blocks, the queries' final states normalised and projected."""
    sd = {k: v.double() for k, v in sd.items()}
    hidden = hidden.double()

    def norm(x, prefix):
        return F.layer_norm(x, x.shape[-1:], sd[prefix + "weight"], sd[prefix + "bias"], 1e-5)

    def linear(x, prefix):
        return x @ sd[prefix + "weight"].T + sd[prefix + "bias"]

    batch, tokens, width = hidden.shape[0], sd["style_embedding"].shape[1], hidden.shape[-1]
    x = norm(torch.cat([hidden, sd["style_embedding"].repeat(batch, 1, 1)], 1), "ln_pre.")
    layer = 0
    while f"transformer_layes.{layer}.ln_1.weight" in sd:
        p = f"transformer_layes.{layer}."
        q, k, v = linear(norm(x, p + "ln_1."), p + "attn.in_proj_").split(width, dim=-1)
        split = lambda t: t.unflatten(-1, (HEADS, width // HEADS)).transpose(1, 2)  # noqa: E731
        weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(width // HEADS), dim=-1)
        x = x + linear((weights @ split(v)).transpose(1, 2).flatten(2), p + "attn.out_proj.")
        h = linear(norm(x, p + "ln_2."), p + "mlp.c_fc.")
        x = x + linear(h * torch.sigmoid(1.702 * h), p + "mlp.c_proj.")
        layer += 1
    return norm(x[:, -tokens:], "ln_post.") @ sd["proj"]


def vision_output(batch: int = 1, seed: int = 0) -> ClipVisionOutput:
    gen = torch.Generator().manual_seed(seed)
    tokens = (TINY_VISION.image_size // TINY_VISION.patch) ** 2 + 1
    last, penultimate = torch.randn(2, batch, tokens, TINY_VISION.width, generator=gen)
    return ClipVisionOutput(image_embeds=torch.randn(batch, TINY_VISION.projection, generator=gen),
                            last_hidden_state=last, penultimate_hidden_states=penultimate)


@pytest.fixture
def tiny(tmp_path):
    return load_style_model_file(write_style_model(tmp_path / "style.safetensors"), "cpu")


def test_layout_is_read_off_the_shapes():
    assert detect_style_adapter(style_shapes(TINY)) == StyleAdapterSpec(TINY.width, TINY.context_dim, TINY.layers,
                                                                         TINY.tokens)
    full = detect_style_adapter(style_shapes(FULL))  # ComfyUI's fixed t2iadapter_style_sd14v1 configuration
    assert (full.width, full.context_dim, full.layers, full.tokens, full.heads) == (1024, 768, 3, 8, 8)
    assert detect_style_adapter({"redux_up.weight": (3, 4)}) is None


def test_tokens_match_the_architecture_written_out(tiny):
    out = vision_output(batch=2)
    tokens = tiny.get_cond(out)
    assert tokens.shape == (2, TINY.tokens, TINY.context_dim) and tokens.dtype == torch.float32
    expected = reference_tokens(style_state_dict(), out.last_hidden_state)
    assert torch.allclose(tokens.double(), expected, atol=1e-5)
    # the last hidden state is what is read, not the penultimate one
    swapped = ClipVisionOutput(out.image_embeds, out.penultimate_hidden_states, out.last_hidden_state)
    assert not torch.allclose(tiny.get_cond(swapped), tokens)


def test_legacy_ckpt_loads_the_same(tmp_path, tiny):
    legacy = load_style_model_file(save(tmp_path / "style.ckpt", style_state_dict()), "cpu")
    out = vision_output()
    assert torch.equal(legacy.get_cond(out), tiny.get_cond(out))


def test_other_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="incomplete Redux"):  # Redux itself: tests/engine/models/test_redux.py
        load_style_model_file(save(tmp_path / "redux.safetensors", {"redux_down.weight": torch.zeros(4, 12)}), "cpu")
    with pytest.raises(CheckpointError, match="style_embedding"):
        load_style_model_file(save(tmp_path / "other.safetensors", {"proj": torch.zeros(2, 2)}), "cpu")
    broken = style_state_dict()
    del broken["transformer_layes.1.mlp.c_fc.bias"]
    with pytest.raises(CheckpointError, match="c_fc"):
        load_style_model_file(save(tmp_path / "broken.safetensors", broken), "cpu")


def apply(conditioning, *args):
    before = copy.deepcopy(conditioning)
    out = style_model.StyleModelApply().apply_stylemodel(conditioning, *args)[0]
    assert_same(before, conditioning)
    return out


def assert_tokens_appended(result, conditioning, images):
    """Each cond of ``result`` is its text from ``conditioning`` followed by ``images`` (tokens, width), per batch
    row, with a copy of its options."""
    for (cond, options), (text, before) in zip(result, conditioning):
        assert cond.shape == (text.shape[0], text.shape[1] + images.shape[0], images.shape[1])
        assert torch.equal(cond[:, :text.shape[1]], text)
        for entry in cond[:, text.shape[1]:]:
            assert torch.allclose(entry, images, atol=1e-5)
        assert options == before and options is not before


def test_multiply_appends_scaled_tokens_of_every_image_to_each_cond(tiny):
    out = vision_output(batch=2, seed=3)
    pooled = torch.ones(1, 5)
    conditioning = [[torch.randn(1, 7, TINY.context_dim), {"pooled_output": pooled}],
                    [torch.randn(2, 4, TINY.context_dim), {}]]
    result = apply(conditioning, tiny, out, 0.4, "multiply")
    tokens = reference_tokens(style_state_dict(), out.last_hidden_state).float()
    images = torch.cat([tokens[0], tokens[1]]) * 0.4  # first image's tokens, then the second's
    assert images.shape == (2 * TINY.tokens, TINY.context_dim)
    assert_tokens_appended(result, conditioning, images)
    assert result[0][1]["pooled_output"] is pooled
    zero = apply(conditioning, tiny, out, 0.0, "multiply")
    assert torch.count_nonzero(zero[0][0][:, 7:]) == 0


def test_attn_bias_at_one_is_a_plain_append_and_otherwise_refused(tiny):
    out = vision_output()
    conditioning = [[torch.randn(1, 7, TINY.context_dim), {}]]
    plain = apply(conditioning, tiny, out, 1.0, "attn_bias")
    assert torch.equal(plain[0][0], apply(conditioning, tiny, out, 1.0, "multiply")[0][0])
    assert "attention_mask" not in plain[0][1]
    with pytest.raises(NotImplementedError, match="attn_bias"):
        apply(conditioning, tiny, out, 0.5, "attn_bias")


@pytest.mark.parametrize("name", sorted(style_model.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name, tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "_active", folders.Folders(tmp_path, input_dir=tmp_path, output_dir=tmp_path,
                                                            temp_dir=tmp_path, user_dir=tmp_path))
    assert_matches_capture(style_model, name)


def style_graph(checkpoint: str, strength: float, prefix: str) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "10": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vision.safetensors"}},
        "11": {"class_type": "LoadImage", "inputs": {"image": "style.png"}},
        "12": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["10", 0], "image": ["11", 0],
                                                            "crop": "center"}},
        "13": {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "style.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a house"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "blurry"}},
        "14": {"class_type": "StyleModelApply", "inputs": {
            "conditioning": ["6", 0], "style_model": ["13", 0], "clip_vision_output": ["12", 0],
            "strength": strength, "strength_type": "multiply"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": 7, "steps": 2, "cfg": 6.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "positive": ["14", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


async def test_style_tokens_steer_an_sd15_run(client, settings):
    checkpoint = place(settings, "tiny-sd15.safetensors", write_sd15)
    models = settings.base_directory / "models"
    for folder in ("clip_vision", "style_models", "../input"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    write_clip_vision(models / "clip_vision" / "vision.safetensors")
    write_style_model(models / "style_models" / "style.safetensors")
    ramp = np.linspace(0, 255, 48, dtype=np.uint8)
    Image.fromarray(np.dstack([np.tile(ramp, (40, 1)), np.tile(ramp[::-1], (40, 1)), np.full((40, 48), 90, np.uint8)])
                    ).save(settings.base_directory / "input" / "style.png")
    styled = saved(settings, await run_ok(client, style_graph(checkpoint, 1.0, "styled")))[0]
    assert styled.shape == (64, 64, 3) and styled.std() > 0
    # strength 0 appends all-zero tokens, so any difference comes from the style tokens' values
    plain = saved(settings, await run_ok(client, style_graph(checkpoint, 0.0, "plain")))[0]
    assert not np.array_equal(styled, plain)
