"""LoRAs on SD3 / SD3.5 MMDiTs and on T5-XXL text encoders: every naming ComfyUI reads lands on the right
parameters with the right rows, and a T5 LoRA reaches a FLUX CLIP's conditioning through LoraLoader.

The original layer -> diffusers modules table below is written out from the two layouts, independently of
sd3.original_names (which runs diffusers' converter); the tiny SD3.5 file has a second attention and q/k norms.
"""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from safetensors.torch import save_file

from engine import Settings, folders
from engine.folders import Folders
from engine.models.load import open_checkpoint
from engine.models.sd3 import detect_sd3, load_sd3, original_names, sd3_config
from engine.models.t5 import load_t5_file
from tests.engine.models.test_lora import params, peft, write
from tests.fixtures import sd3 as fixture
from tests.fixtures.t5 import t5_shapes, write_t5
from tests.fixtures.z_image import lora_factors, write_merged

LAYOUT = fixture.SD3Layout(depth=2, dual_attention_layers=(0,), qk_norm=True)
SHAPES = fixture.sd3_shapes(LAYOUT, prefix="")
LAST = LAYOUT.depth - 1
# Modulations whose (shift, scale) halves the loader swaps into diffusers' (scale, shift): no original-layout name.
SWAPPED = {"final_layer.adaLN_modulation.1": "norm_out.linear",
           f"joint_blocks.{LAST}.context_block.adaLN_modulation.1": f"transformer_blocks.{LAST}.norm1_context.linear"}
LORA_LAYERS = {  # original layer -> the diffusers modules holding its rows, in order
    "joint_blocks.0.x_block.attn.qkv": ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                        "transformer_blocks.0.attn.to_v"),
    f"joint_blocks.{LAST}.context_block.attn.qkv": (f"transformer_blocks.{LAST}.attn.add_q_proj",
                                                    f"transformer_blocks.{LAST}.attn.add_k_proj",
                                                    f"transformer_blocks.{LAST}.attn.add_v_proj"),
    "joint_blocks.0.x_block.attn2.qkv": ("transformer_blocks.0.attn2.to_q", "transformer_blocks.0.attn2.to_k",
                                         "transformer_blocks.0.attn2.to_v"),
    "joint_blocks.0.x_block.attn2.proj": ("transformer_blocks.0.attn2.to_out.0",),
    "joint_blocks.0.context_block.attn.proj": ("transformer_blocks.0.attn.to_add_out",),
    "joint_blocks.0.context_block.mlp.fc1": ("transformer_blocks.0.ff_context.net.0.proj",),
    f"joint_blocks.{LAST}.x_block.mlp.fc2": (f"transformer_blocks.{LAST}.ff.net.2",),
    "joint_blocks.0.x_block.adaLN_modulation.1": ("transformer_blocks.0.norm1.linear",),
    "joint_blocks.0.context_block.adaLN_modulation.1": ("transformer_blocks.0.norm1_context.linear",),
    "context_embedder": ("context_embedder",),
    "y_embedder.mlp.0": ("time_text_embed.text_embedder.linear_1",),
    "t_embedder.mlp.2": ("time_text_embed.timestep_embedder.linear_2",),
    "final_layer.linear": ("proj_out",),
}
# How each naming writes a layer: an original-layout name for the fused weight, or one name per diffusers module.
ORIGINAL_NAMINGS = {"comfy": "diffusion_model.{}", "kohya": "lora_unet_{}"}
DIFFUSERS_NAMINGS = {"diffusers": "transformer.{}", "peft": "base_model.model.{}", "onetrainer": "lora_transformer_{}",
                     "lycoris": "lycoris_{}"}
FLAT = {"kohya", "onetrainer", "lycoris"}  # dots as underscores


def layer_name(naming: str, layer: str) -> str:
    pattern = ORIGINAL_NAMINGS.get(naming) or DIFFUSERS_NAMINGS[naming]
    return pattern.format(layer.replace(".", "_") if naming in FLAT else layer)


def sd3_lora_tensors(factors: dict, naming: str, layers: dict = LORA_LAYERS) -> dict[str, torch.Tensor]:
    """Original-layout factors {layer: (up, down)} as a LoRA file in ``naming``; the diffusers namings split up's
    rows over the modules of ``layers`` (a fused q/k/v in thirds)."""
    out = {}
    for layer, (up, down) in factors.items():
        names = [layer] if naming in ORIGINAL_NAMINGS else layers[layer]
        for name, rows in zip(names, up.chunk(len(names))):
            out.update(peft(layer_name(naming, name), rows.clone(), down.clone()))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(float32 SD3Transformer2DModel, the file's tensors without prefix in float32). Read-only."""
    path = fixture.write_sd3(tmp_path_factory.mktemp("sd3") / "sd35.safetensors", seed=3, layout=LAYOUT)
    with open_checkpoint(path, torch.device("cpu")) as file:
        spec, transformer = load_sd3(file, torch.device("cpu"), torch.float32)
        tensors = {k.removeprefix(spec.prefix): file.read(k).float() for k in file.shapes}
    return transformer, tensors


def test_original_names_point_at_the_weights_loaded_there(tiny):
    transformer, tensors = tiny
    ours = params(transformer)
    mapping = original_names(list(ours))
    left_out = {f"{layer}.{end}" for layer in SWAPPED for end in ("weight", "bias")}
    assert set(mapping) == set(tensors) - left_out - {"pos_embed"}  # the position grid is a buffer of ours
    for original, held in mapping.items():
        assert torch.equal(torch.cat([ours[n] for n in held]), tensors[original]), original
    held = sorted(n for names in mapping.values() for n in names)
    assert held == sorted(n for n in ours if n.rsplit(".", 1)[0] not in SWAPPED.values())  # every other one, once


@pytest.mark.parametrize("layout", [fixture.SD35_LARGE, fixture.SD35_MEDIUM, fixture.SD3_MEDIUM])
def test_original_names_cover_released_model_sizes(layout):
    from diffusers import SD3Transformer2DModel

    full = fixture.sd3_shapes(layout, prefix="")
    with torch.device("meta"):
        network = SD3Transformer2DModel(**sd3_config(detect_sd3(full, "full")))
    last = layout.depth - 1
    left_out = {f"{layer}.{end}" for end in ("weight", "bias")
                for layer in ("final_layer.adaLN_modulation.1", f"joint_blocks.{last}.context_block.adaLN_modulation.1")}
    assert set(original_names(list(params(network)))) == set(full) - left_out - {"pos_embed"}


def expected_changes(transformer, factors, scale=1.0) -> dict[str, torch.Tensor]:
    """{parameter: its rows of scale * up @ down}, rows split by the modules' own sizes."""
    ours = params(transformer)
    out = {}
    for layer, (up, down) in factors.items():
        names = [m + ".weight" for m in LORA_LAYERS[layer]]
        out.update(zip(names, (scale * up @ down).split([ours[n].shape[0] for n in names])))
    return out


@pytest.mark.parametrize("naming", sorted({**ORIGINAL_NAMINGS, **DIFFUSERS_NAMINGS}))
def test_lora_layers_in_each_naming(tmp_path, tiny, naming):
    transformer, tensors = tiny
    factors = lora_factors(SHAPES, LORA_LAYERS, seed=5)
    patch = write(tmp_path, sd3_lora_tensors(factors, naming))
    deltas = patch.deltas("unet", params(transformer))
    expected = expected_changes(transformer, factors)
    assert set(deltas) == set(expected) and len(expected) == 3 * 3 + 10
    for name, change in expected.items():
        torch.testing.assert_close(deltas[name], change, rtol=1e-5, atol=1e-6)
    assert patch.matched_keys("unet", params(transformer)) == set(patch.keys)


def test_swapped_modulations_take_diffusers_names_only(tmp_path, tiny):
    transformer, tensors = tiny
    factors = lora_factors(SHAPES, SWAPPED, seed=6)
    original = write(tmp_path, {**sd3_lora_tensors(factors, "comfy"), **sd3_lora_tensors(factors, "kohya")},
                     "original.safetensors")
    assert original.deltas("unet", params(transformer)) == {}
    assert original.matched_keys("unet", params(transformer)) == set()
    # diffusers' names are our parameters as they are, (scale, shift) halves and all
    diffusers = write(tmp_path, sd3_lora_tensors(factors, "diffusers", {k: (v,) for k, v in SWAPPED.items()}))
    deltas = diffusers.deltas("unet", params(transformer))
    assert set(deltas) == {v + ".weight" for v in SWAPPED.values()}
    for layer, module in SWAPPED.items():
        up, down = factors[layer]
        torch.testing.assert_close(deltas[module + ".weight"], up @ down)


# -- T5-XXL ---------------------------------------------------------------------------------------------------------

T5_LAYERS = ("encoder.block.0.layer.0.SelfAttention.q", "encoder.block.0.layer.1.DenseReluDense.wi_1",
             "encoder.block.1.layer.0.SelfAttention.o", "encoder.block.1.layer.1.DenseReluDense.wo")
# The CLIP's encoders -> the kohya prefixes its T5-XXL answers to, as ComfyUI numbers them.
T5_KOHYA = {("l", "g", "t5xxl"): ("lora_te3_",), ("l", "t5xxl"): ("lora_te2_", "lora_te3_"),
            ("g", "t5xxl"): ("lora_te2_",), ("t5xxl",): ("lora_te1_",)}


def t5_lora_tensors(factors: dict, prefixes) -> dict[str, torch.Tensor]:
    """Each factored T5 layer under one of ``prefixes`` (in turn): kohya's flat names, or ComfyUI's generic naming
    for "text_encoders.t5xxl.transformer."."""
    out = {}
    for i, (layer, (up, down)) in enumerate(factors.items()):
        prefix = prefixes[i % len(prefixes)]
        name = prefix + layer if prefix.startswith("text_encoders.") else prefix + layer.replace(".", "_")
        out.update(peft(name, up.clone(), down.clone()))
    return out


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return load_t5_file(write_t5(tmp_path_factory.mktemp("t5") / "t5.safetensors", seed=4), "cpu",
                        torch.float32).model


@pytest.mark.parametrize("encoders", sorted(T5_KOHYA), ids="+".join)
def test_t5_takes_generic_names_and_kohya_numbered_after_the_clips(tmp_path, t5, encoders):
    factors = lora_factors(t5_shapes(), T5_LAYERS, seed=7)
    generic = write(tmp_path, t5_lora_tensors(factors, ["text_encoders.t5xxl.transformer."]), "generic.safetensors")
    others = [p for p in ("lora_te1_", "lora_te2_", "lora_te3_") if p not in T5_KOHYA[encoders]]
    kohya = write(tmp_path, {**t5_lora_tensors(factors, T5_KOHYA[encoders]),
                             **t5_lora_tensors(lora_factors(t5_shapes(), ["shared"], seed=8), others)})
    for patch in (generic, kohya):
        view = patch.for_text_encoders(encoders)
        deltas = view.deltas("clip_t5xxl", params(t5))
        assert set(deltas) == {layer + ".weight" for layer in T5_LAYERS}  # the other numbers are other encoders'
        for layer, (up, down) in factors.items():
            torch.testing.assert_close(deltas[layer + ".weight"], up @ down)


CLIP_L, T5, MERGED_T5, LORA = "clip_l.safetensors", "t5xxl_fp16.safetensors", "t5_merged.safetensors", "t5.safetensors"
STRENGTH = 1.5


@pytest.fixture
def flux_clip_files(tmp_path, monkeypatch):
    """Active model folders with FLUX's CLIP-L and T5-XXL, a T5 LoRA (kohya te2 and generic names) and the T5
    file with that LoRA merged into its weights."""
    from tests.fixtures.checkpoints import write_clip_l

    active = Folders.from_settings(Settings(base_directory=tmp_path, cpu=True))
    active.create_dirs()
    monkeypatch.setattr(folders, "_active", active)
    text_encoders = tmp_path / "models" / "text_encoders"
    write_clip_l(text_encoders / CLIP_L, projection=True)
    write_t5(text_encoders / T5)
    factors = lora_factors(t5_shapes(), T5_LAYERS, seed=9)
    write_merged(text_encoders / MERGED_T5, text_encoders / T5, factors, STRENGTH, "")
    save_file(t5_lora_tensors(factors, ["lora_te2_", "text_encoders.t5xxl.transformer."]),
              str(tmp_path / "models" / "loras" / LORA))


def test_t5_lora_reaches_a_flux_clip_through_lora_loader_and_goes_away_after(flux_clip_files, caplog):
    from nodes import loaders
    from nodes.lora import LoraLoader

    def encode(clip):
        return clip.encode_from_tokens(clip.tokenize("a lighthouse on a cliff at dusk"), return_pooled=True)

    (clip,) = loaders.DualCLIPLoader().load_clip(CLIP_L, T5, "flux")
    t5 = clip.models["t5xxl"]
    base_weights = copy.deepcopy(dict(t5.state_dict()))
    base_cond, base_pooled = encode(clip)
    with caplog.at_level(logging.WARNING, logger="comfyd.lora"):
        _, with_lora = LoraLoader().load_lora(None, clip, LORA, 0.0, STRENGTH)
    assert not [r for r in caplog.records if "not loaded" in r.message]  # every key matched an encoder
    cond, pooled = encode(with_lora)
    (merged,) = loaders.DualCLIPLoader().load_clip(CLIP_L, MERGED_T5, "flux")
    merged_cond, _ = encode(merged)
    assert (cond - base_cond).abs().mean() > 1e-2, "the LoRA must move the T5 features for the test to mean anything"
    torch.testing.assert_close(cond, merged_cond, rtol=1e-4, atol=1e-5)
    assert torch.equal(pooled, base_pooled)  # CLIP-L untouched
    again_cond, _ = encode(clip)
    assert torch.equal(again_cond, base_cond)
    assert all(torch.equal(p, base_weights[n]) for n, p in t5.state_dict().items())

