"""SD3's text side through the nodes: TripleCLIPLoader, DualCLIPLoader / CLIPLoader type "sd3" on tiny CLIP-L,
CLIP-G and T5 files in any order, CLIPTextEncodeSD3's empty padding; declarations against upstream's /object_info."""
from __future__ import annotations

import itertools

import pytest
import torch

from engine import folders
from nodes import loaders, sd3, text_encode
from tests.fixtures.checkpoints import write_clip_g, write_clip_l
from tests.fixtures.t5 import SD3_T5, write_t5
from tests.nodes.test_latent_nodes import assert_matches_capture
from tests.upstream import declaration


FILES = {"l": "clip_l.safetensors", "g": "clip_g.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}
CLIP_L, CLIP_G, T5 = FILES.values()


def use_folders(monkeypatch, base):
    monkeypatch.setattr(folders, "_active", folders.Folders(base, input_dir=base, output_dir=base, temp_dir=base,
                                                            user_dir=base))


@pytest.mark.parametrize("name", sorted(sd3.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name, tmp_path, monkeypatch):
    use_folders(monkeypatch, tmp_path)  # no model files, as where upstream's declarations were captured
    assert_matches_capture(sd3, name)


@pytest.mark.parametrize("loader", [loaders.CLIPLoader, loaders.DualCLIPLoader])
def test_loader_types_and_recipes_follow_upstream(loader):
    upstream = declaration(loader.__name__)
    assert "sd3" in loader.TYPES
    assert loader.TYPES == [t for t in upstream["input"]["required"]["type"][0] if t in loader.TYPES]
    recipes = upstream["description"].split("\n")
    ours = loader.DESCRIPTION.split("\n")
    assert ours[:2] == recipes[:2]
    sd3_recipe = next(line for line in recipes if line.startswith("sd3: "))
    assert sd3_recipe in ours
    # Every type we offer that upstream gives a recipe for has upstream's recipe line.
    for line in recipes[2:]:
        if line.split(":")[0] in loader.TYPES and line.split(":")[0] != "lumina2":  # ours: Qwen3, not Gemma 2
            assert line in ours


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("sd3_nodes")
    folder = base / "models" / "text_encoders"
    folder.mkdir(parents=True)
    write_clip_l(folder / CLIP_L, projection=True)
    write_clip_g(folder / CLIP_G)
    write_t5(folder / T5, layout=SD3_T5)
    return base


@pytest.fixture
def encoder_files(base, monkeypatch):
    use_folders(monkeypatch, base)


def triple(*names):
    (clip,) = sd3.TripleCLIPLoader().load_clip(*names)
    return clip


def encode(clip, prompt):
    ((cond, options),) = text_encode.CLIPTextEncode().encode(clip, prompt)[0]
    return cond, options["pooled_output"]


def assert_same_conditioning(a, b):
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_triple_loader_any_order(encoder_files):
    clips = [triple(*order) for order in itertools.permutations(FILES.values())]
    assert all(set(clip.models) == {"l", "g", "t5xxl"} and clip.family == "sd3" for clip in clips)
    first = encode(clips[0], "a red fox")
    assert first[0].shape == (1, 77 + 77, 96) and first[1].shape == (1, 32 + 48)
    for clip in clips[1:]:
        assert_same_conditioning(encode(clip, "a red fox"), first)


def test_triple_loader_needs_three_different_encoders(encoder_files):
    with pytest.raises(ValueError, match=r"sd3 takes different text encoders .*got \['l', 'l', 't5xxl'\]"):
        triple(CLIP_L, CLIP_L, T5)


@pytest.mark.parametrize("pair", list(itertools.combinations(FILES, 2)), ids="+".join)
def test_dual_loader_sd3_any_pair_either_order(encoder_files, pair):
    names = [FILES[name] for name in pair]
    (first,) = loaders.DualCLIPLoader().load_clip(*names, "sd3")
    (second,) = loaders.DualCLIPLoader().load_clip(*reversed(names), "sd3")
    assert set(first.models) == set(second.models) == set(pair) and first.family == second.family == "sd3"
    tokens = first.tokenize("a fox")
    if pair == ("g", "t5xxl"):
        # CLIP-G alone is 768 + 48 wide, more than the tiny T5 takes: T5's part only (the join of the two is
        # covered in tests/engine/models/test_sd3_text.py with a wider T5).
        tokens["l"] = tokens["g"] = []
    assert_same_conditioning(first.encode_from_tokens(tokens, return_pooled=True),
                             second.encode_from_tokens(tokens, return_pooled=True))


def test_dual_loader_sd3_needs_two_different_encoders(encoder_files):
    with pytest.raises(ValueError, match=r"sd3 takes different text encoders .*got \['t5xxl', 't5xxl'\]"):
        loaders.DualCLIPLoader().load_clip(T5, T5, "sd3")


@pytest.mark.parametrize("name", FILES)
def test_clip_loader_sd3_single_encoder(encoder_files, name):
    (clip,) = loaders.CLIPLoader().load_clip(FILES[name], "sd3")
    assert set(clip.models) == {name} and clip.family == "sd3"
    cond, pooled = encode(clip, "a fox")
    assert cond.shape == {"l": (1, 77, 32), "g": (1, 77, 768 + 48), "t5xxl": (1, 77, 96)}[name]
    assert pooled.shape == (1, 768 + 1280 if name == "t5xxl" else {"l": 32 + 1280, "g": 768 + 48}[name])
    assert (torch.count_nonzero(pooled) == 0) == (name == "t5xxl")


def sd3_encode(clip, clip_l, clip_g, t5xxl, empty_padding):
    ((cond, options),) = sd3.CLIPTextEncodeSD3().encode(clip, clip_l, clip_g, t5xxl, empty_padding)[0]
    assert set(options) == {"pooled_output"}
    return cond, options["pooled_output"]


def test_separate_prompts_go_to_their_encoders(encoder_files):
    clip = triple(CLIP_L, CLIP_G, T5)
    cond, pooled = sd3_encode(clip, "a cat", "a (red:1.2) fox", "a fox in the snow", "none")
    tokens = {"l": clip.tokenize("a cat")["l"], "g": clip.tokenize("a (red:1.2) fox")["g"],
              "t5xxl": clip.tokenize("a fox in the snow")["t5xxl"]}
    expected = clip.encode_from_tokens(tokens, return_pooled=True)
    assert_same_conditioning((cond, pooled), expected)
    assert not torch.equal(cond, encode(clip, "a cat")[0])
    # Plain CLIPTextEncode gives all three encoders the same text.
    assert_same_conditioning(encode(clip, "a fox"), sd3_encode(clip, "a fox", "a fox", "a fox", "none"))


def test_empty_padding_none_gives_empty_fields_no_tokens(encoder_files):
    clip = triple(CLIP_L, CLIP_G, T5)
    # Both CLIP fields empty: no CLIP part, zero pooled output; T5 alone.
    cond, pooled = sd3_encode(clip, "", "", "a fox", "none")
    t5_only = clip.encode_from_tokens({"l": [], "g": [], "t5xxl": clip.tokenize("a fox")["t5xxl"]})
    assert torch.equal(cond, t5_only) and cond.shape == (1, 77, 96)
    assert torch.equal(pooled, torch.zeros(1, 2048))
    padded, padded_pooled = sd3_encode(clip, "", "", "a fox", "empty_prompt")
    assert padded.shape == (1, 77 + 77, 96) and padded_pooled.shape == (1, 80)
    assert torch.equal(padded[:, :77], encode(clip, "")[0][:, :77])
    assert torch.equal(padded[:, 77:], t5_only) and torch.count_nonzero(padded_pooled) > 0
    # An empty T5 field: T5 encodes its end token alone.
    cond, _ = sd3_encode(clip, "a fox", "a fox", "", "none")
    assert cond.shape == (1, 77 + 1, 96)
    padded, _ = sd3_encode(clip, "a fox", "a fox", "", "empty_prompt")
    assert padded.shape == (1, 77 + 77, 96) and torch.equal(padded[:, :77], cond[:, :77])
    assert torch.equal(padded[:, 77:], encode(clip, "")[0][:, 77:])
    # Nothing at all and no T5: ComfyUI's zeros.
    (no_t5,) = loaders.DualCLIPLoader().load_clip(CLIP_L, CLIP_G, "sd3")
    cond, pooled = sd3_encode(no_t5, "", "", "", "none")
    assert torch.equal(cond, torch.zeros(1, 77, 4096)) and torch.equal(pooled, torch.zeros(1, 2048))


def test_clip_l_and_g_windows_are_made_equally_long(encoder_files):
    clip = triple(CLIP_L, CLIP_G, T5)
    long_prompt = " ".join(f"word{i}" for i in range(40))
    windows = len(clip.tokenize(long_prompt)["l"])
    assert windows > 1
    for empty_padding in ("none", "empty_prompt"):
        # A long CLIP-L prompt: CLIP-G gets empty windows after its one, and the other way round.
        cond, _ = sd3_encode(clip, long_prompt, "a fox", "", empty_padding)
        g_padded = clip.tokenize("a fox")["g"] + clip.empty_chunk("g") * (windows - 1)
        expected = clip.encode_from_tokens({"l": clip.tokenize(long_prompt)["l"], "g": g_padded,
                                            "t5xxl": [] if empty_padding == "none" else clip.tokenize("")["t5xxl"]})
        assert cond.shape[1] == windows * 77 + (1 if empty_padding == "none" else 77)
        assert torch.equal(cond, expected)
        cond, _ = sd3_encode(clip, "", long_prompt, "a fox", empty_padding)
        assert cond.shape[1] == windows * 77 + 77  # an empty CLIP-L field is padded with empty windows either way


async def test_nodes_in_object_info(client):
    info = await (await client.get("/object_info")).json()
    for name in ("TripleCLIPLoader", "CLIPTextEncodeSD3"):
        assert info[name]["python_module"] == "comfy_extras.nodes_sd3"
    assert info["TripleCLIPLoader"]["category"] == "advanced/loaders"
    assert info["CLIPTextEncodeSD3"]["input_order"] == {
        "required": ["clip", "clip_l", "clip_g", "t5xxl", "empty_padding"]}
    assert "sd3" in info["DualCLIPLoader"]["input"]["required"]["type"][0]
    assert "sd3" in info["CLIPLoader"]["input"]["required"]["type"][0]
