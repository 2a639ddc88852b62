"""Flux's text side through the nodes: DualCLIPLoader type "flux" on tiny CLIP-L + T5 files, CLIPTextEncodeFlux,
FluxGuidance, FluxDisableGuidance; declarations against upstream's /object_info."""
from __future__ import annotations

import copy

import pytest
import torch
import transformers
from safetensors.torch import load_file

from engine import folders
from engine.text.clip_tokenizer import END_ID, clip_tokenizer
from nodes import flux, loaders, text_encode
from tests.fixtures.checkpoints import write_clip_l
from tests.fixtures.t5 import write_t5
from tests.nodes.test_latent_nodes import assert_matches_capture, assert_same
from tests.upstream import declaration

CLIP_L, T5 = "clip_l.safetensors", "t5xxl_fp16.safetensors"


@pytest.mark.parametrize("name", sorted(flux.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(flux, name)


def test_dual_clip_loader_types_follow_upstream_order():
    upstream = declaration("DualCLIPLoader")
    types = upstream["input"]["required"]["type"][0]
    assert loaders.DualCLIPLoader.TYPES == [t for t in types if t in loaders.DualCLIPLoader.TYPES]
    assert loaders.DualCLIPLoader.TYPES[:3] == ["sdxl", "sd3", "flux"]
    ours = loaders.DualCLIPLoader.DESCRIPTION.split("\n")
    assert ours[:2] == upstream["description"].split("\n")[:2]
    assert set(ours) <= set(upstream["description"].split("\n"))


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "text_encoders"
    folder.mkdir(parents=True)
    write_clip_l(folder / CLIP_L, projection=True)
    write_t5(folder / T5)
    monkeypatch.setattr(folders, "_active", folders.Folders(tmp_path, input_dir=tmp_path, output_dir=tmp_path,
                                                            temp_dir=tmp_path, user_dir=tmp_path))
    return folder


def load(first=CLIP_L, second=T5):
    (clip,) = loaders.DualCLIPLoader().load_clip(first, second, "flux")
    return clip


def clip_l_reference(folder, prompt: str):
    """CLIP-L straight from the file: transformers' pooler output (the final norm at the end token), not
    projected."""
    tensors = {k: v.float() for k, v in load_file(str(folder / CLIP_L)).items()}
    config = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=1, max_position_embeddings=77,
                                         projection_dim=32, hidden_act="quick_gelu")
    model = transformers.CLIPTextModelWithProjection(config).eval()
    missing, _ = model.load_state_dict(tensors, strict=False)  # the file's position ids may be extra
    assert not missing
    ids = clip_tokenizer()(prompt)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids + [END_ID] * (77 - len(ids))]))
        unprojected = model.text_model(input_ids=torch.tensor([ids + [END_ID] * (77 - len(ids))])).pooler_output
    return unprojected, out.text_embeds


def cond_and_pooled(clip, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    return clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True)


def test_either_order_gives_the_same_conditioning(models):
    first, second = load(CLIP_L, T5), load(T5, CLIP_L)
    assert set(first.models) == set(second.models) == {"l", "t5xxl"} and first.family == "flux"
    (a,) = text_encode.CLIPTextEncode().encode(first, "a red fox")[0]
    (b,) = text_encode.CLIPTextEncode().encode(second, "a red fox")[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["pooled_output"], b[1]["pooled_output"])


def test_flux_needs_clip_l_and_t5(models):
    with pytest.raises(ValueError, match="flux needs a CLIP-L and a T5-XXL"):
        load(CLIP_L, CLIP_L)
    with pytest.raises(ValueError, match="stable_diffusion needs a CLIP"):
        loaders.CLIPLoader().load_clip(T5, "stable_diffusion")


def test_clip_text_encode_flux(models):
    clip = load()
    (out,) = flux.CLIPTextEncodeFlux().encode(clip, "a (red:1.3) fox", "a fox in the snow, photo", 4.5)
    ((cond, options),) = out
    assert set(options) == {"pooled_output", "guidance"} and options["guidance"] == 4.5
    assert cond.shape == (1, 256, 32)
    assert torch.equal(cond, cond_and_pooled(clip, "a fox in the snow, photo")[0])
    assert not torch.equal(cond, cond_and_pooled(clip, "a (red:1.3) fox")[0])
    unprojected, projected = clip_l_reference(models, "a red fox")
    weighted_pooled = cond_and_pooled(clip, "a (red:1.3) fox")[1]
    assert torch.equal(options["pooled_output"], weighted_pooled) and weighted_pooled.shape == (1, 32)
    # The pooled output is CLIP-L's unprojected one (weights do not touch it: it comes from the raw output).
    torch.testing.assert_close(options["pooled_output"], unprojected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(options["pooled_output"], projected, atol=1e-3)


def test_plain_clip_text_encode_uses_the_text_for_both(models):
    clip = load()
    (plain,) = text_encode.CLIPTextEncode().encode(clip, "a fox")[0]
    ((split, options),) = flux.CLIPTextEncodeFlux().encode(clip, "a fox", "a fox", 3.5)[0]
    assert torch.equal(plain[0], split) and torch.equal(plain[1]["pooled_output"], options["pooled_output"])
    assert "guidance" not in plain[1]


def test_last_layer_applies_to_both_encoders(models):
    clip = load()
    (skipped,) = text_encode.CLIPSetLastLayer().set_last_layer(clip, -2)
    assert clip.layer_idx is None and skipped.layer_idx == -2
    base, base_pooled = clip.encode_from_tokens(clip.tokenize("a fox"), return_pooled=True)
    cond, pooled = skipped.encode_from_tokens(skipped.tokenize("a fox"), return_pooled=True)
    assert not torch.allclose(cond, base)
    assert torch.equal(pooled, base_pooled)  # ComfyUI's pooled output always comes from CLIP-L's last layer


def conditioning():
    return [[torch.randn(1, 4, 8), {"pooled_output": torch.randn(1, 3), "guidance": 2.0}],
            [torch.randn(1, 4, 8), {"area": (8, 8, 0, 0)}]]


def test_flux_guidance_sets_every_entry_on_copies():
    before = conditioning()
    given = copy.deepcopy(before)
    (out,) = flux.FluxGuidance().append(given, 6.0)
    assert_same(given, before)
    assert [options["guidance"] for _, options in out] == [6.0, 6.0]
    assert out[1][1]["area"] == (8, 8, 0, 0) and out[0][0] is given[0][0]
    assert out[0][1]["pooled_output"] is given[0][1]["pooled_output"]


def test_flux_disable_guidance_sets_none():
    given = conditioning()
    (out,) = flux.FluxDisableGuidance().append(given)
    assert [options["guidance"] for _, options in out] == [None, None]
    assert given[0][1]["guidance"] == 2.0 and "guidance" not in given[1][1]


async def test_nodes_in_object_info(client):
    info = await (await client.get("/object_info")).json()
    for name in ("CLIPTextEncodeFlux", "FluxGuidance", "FluxDisableGuidance"):
        assert info[name]["python_module"] == "comfy_extras.nodes_flux"
        assert info[name]["category"] == "advanced/conditioning/flux"
    assert info["CLIPTextEncodeFlux"]["input_order"] == {"required": ["clip", "clip_l", "t5xxl", "guidance"]}
    assert "flux" in info["DualCLIPLoader"]["input"]["required"]["type"][0]
