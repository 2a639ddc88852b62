"""Model merging and saving nodes: declarations against upstream; merges as patches (the arithmetic of ComfyUI's
add_patches, the inputs left as they were, LoRAs before and inside a merge); saved files (names, numbering, key
layout of every SD family, metadata), and a saved merge that loads back through CheckpointLoaderSimple and samples
the same image as the merge it was saved from."""
from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine import Settings, folders
from engine.folders import Folders
from engine.models import saving
from engine.models.manager import patched_weights
from nodes import model_merging as mm
from nodes.loaders import CheckpointLoaderSimple
from nodes.lora import LoraLoader
from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures import checkpoints as fx
from tests.nodes.test_latent_nodes import assert_matches_capture
from tests.nodes.test_lora_nodes import sd1_lora_tensors

CONV = "down_blocks.0.resnets.0.conv1.weight"  # in LDM terms input_blocks.1.0.in_layers.2.weight
OUT_CONV = "conv_out.weight"  # out.2.weight
CLIP_FC = "encoder.layers.0.mlp.fc1.weight"
WRITERS = {"sd1": fx.write_sd15, "sd2": fx.write_sd2, "sdxl": fx.write_sdxl, "sdxl_refiner": fx.write_sdxl_refiner}


@pytest.mark.parametrize("name", sorted(mm.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(mm, name)


@pytest.fixture
def base(tmp_path, monkeypatch):
    active = Folders.from_settings(Settings(base_directory=tmp_path, cpu=True))
    active.create_dirs()
    (tmp_path / "models" / "diffusion_models").mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(folders, "_active", active)
    return tmp_path


def load(base, family: str, seed: int):
    name = f"{family}-{seed}.safetensors"
    path = base / "models" / "checkpoints" / name
    if not path.exists():
        WRITERS[family](path, seed)
    return CheckpointLoaderSimple().load_checkpoint(name)


@pytest.fixture
def two(base):
    """(MODEL, CLIP, VAE) of two tiny SD1.5 checkpoints with different weights."""
    return load(base, "sd1", 0), load(base, "sd1", 1)


def weights(owner, target="unet") -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in dict(
        owner.unet.named_parameters() if target == "unet" else owner.models["l"].named_parameters()).items()}


def effective(owner, target="unet") -> dict[str, torch.Tensor]:
    return dict(patched_weights(owner)[target])


def test_merges_are_patches_on_a_clone_with_comfyuis_arithmetic(two):
    (m1, _, _), (m2, _, _) = two
    w1, w2 = weights(m1), weights(m2)
    (simple,) = mm.ModelMergeSimple().merge(m1, m2, 0.3)
    (added,) = mm.ModelMergeAdd().merge(m1, m2)
    (subtracted,) = mm.ModelMergeSubtract().merge(m1, m2, 2.5)
    assert m1.patches == [] and m2.patches == [] and simple.unet is m1.unet  # nothing copied, inputs unchanged
    for merged, expected in ((simple, 0.3 * w1[CONV] + 0.7 * w2[CONV]), (added, w1[CONV] + w2[CONV]),
                             (subtracted, 2.5 * (w1[CONV] - w2[CONV]))):
        torch.testing.assert_close(effective(merged)[CONV], expected, rtol=0, atol=1e-5)
    # the manager writes them while the clone runs and restores the first model's weights afterwards
    with m1.manager.running(simple):
        torch.testing.assert_close(dict(m1.unet.named_parameters())[CONV], 0.3 * w1[CONV] + 0.7 * w2[CONV],
                                   rtol=0, atol=1e-6)
    with m1.manager.running(m1):
        assert torch.equal(dict(m1.unet.named_parameters())[CONV], w1[CONV])
    (unchanged,) = mm.ModelMergeSimple().merge(m1, m2, 1.0)
    assert all(torch.equal(effective(unchanged)[k], w1[k]) for k in (CONV, OUT_CONV))


def test_block_merges_take_the_longest_matching_prefix_of_comfyuis_names(two):
    (m1, _, _), (m2, _, _) = two
    w1, w2 = weights(m1), weights(m2)
    # "out" names both output_blocks.* and out.*; input_blocks.1.0... is "input"'s
    (merged,) = mm.ModelMergeBlocks().merge(m1, m2, input=0.0, middle=1.0, out=0.25)
    got = effective(merged)
    assert torch.equal(got[CONV], w2[CONV])
    torch.testing.assert_close(got[OUT_CONV], 0.25 * w1[OUT_CONV] + 0.75 * w2[OUT_CONV], rtol=0, atol=1e-6)
    ratios = dict.fromkeys(mm.ModelMergeSD1.BLOCKS, 1.0)
    (specific,) = mm.ModelMergeSD1().merge(m1, m2, **{**ratios, "input_blocks.1.": 0.5, "out.": 0.0})
    got = effective(specific)
    torch.testing.assert_close(got[CONV], 0.5 * (w1[CONV] + w2[CONV]), rtol=0, atol=1e-6)
    assert torch.equal(got[OUT_CONV], w2[OUT_CONV]) and torch.equal(got["conv_in.weight"], w1["conv_in.weight"])


def test_loras_before_and_inside_a_merge(two, base):
    """ComfyUI merges the second model with its own patches, and scales the first one's weight as patched so far:
    (w1 + lora) * ratio + (w2 + lora) * (1 - ratio). Merging a model with its own LoRA'd clone reads and writes
    the same network."""
    (m1, c1, _), (m2, _, _) = two
    save_file(sd1_lora_tensors(0), str(base / "models" / "loras" / "style.safetensors"))
    lora1, _ = LoraLoader().load_lora(m1, c1, "style.safetensors", 0.7, 0.0)
    lora2, _ = LoraLoader().load_lora(m2, c1, "style.safetensors", -0.4, 0.0)
    w1, w2 = effective(lora1), effective(lora2)
    (merged,) = mm.ModelMergeSimple().merge(lora1, lora2, 0.6)
    torch.testing.assert_close(effective(merged)[CONV], 0.6 * w1[CONV] + 0.4 * w2[CONV], rtol=0, atol=1e-5)
    (own,) = mm.ModelMergeSimple().merge(m1, lora1, 0.5)
    loaded = weights(m1)[CONV]
    with m1.manager.running(own):
        torch.testing.assert_close(dict(m1.unet.named_parameters())[CONV], 0.5 * (loaded + w1[CONV]),
                                   rtol=0, atol=1e-5)
    with m1.manager.running(m1):
        assert torch.equal(dict(m1.unet.named_parameters())[CONV], loaded)


def test_clip_merges(two):
    (_, c1, _), (_, c2, _) = two
    a, b = weights(c1, "clip")[CLIP_FC], weights(c2, "clip")[CLIP_FC]
    (simple,) = mm.CLIPMergeSimple().merge(c1, c2, 0.25)
    (added,) = mm.CLIPMergeAdd().merge(c1, c2)
    (subtracted,) = mm.CLIPMergeSubtract().merge(c1, c2, -1.5)
    assert c1.patches == [] and simple.models == c1.models
    for merged, expected in ((simple, 0.25 * a + 0.75 * b), (added, a + b), (subtracted, -1.5 * (a - b))):
        torch.testing.assert_close(effective(merged, "clip_l")[CLIP_FC], expected, rtol=0, atol=1e-5)


def test_flux_block_merge_names_the_original_layout(base):
    """ModelMergeFlux1's inputs are ComfyUI's (original) module names: a fused qkv is three of our weights, the
    final modulation (its halves swapped in diffusers' layout) is final_layer's."""
    from nodes.loaders import UNETLoader
    from tests.fixtures import flux as flux_fixture

    for seed in (0, 1):
        flux_fixture.write_flux(base / "models" / "diffusion_models" / f"flux-{seed}.safetensors", seed)
    m1, m2 = ((UNETLoader().load_unet(f"flux-{seed}.safetensors")[0]) for seed in (0, 1))
    w1, w2 = weights(m1), weights(m2)
    ratios = {**dict.fromkeys(mm.ModelMergeFlux1.BLOCKS, 1.0), "double_blocks.0.": 0.0, "final_layer.": 0.5}
    (merged,) = mm.ModelMergeFlux1().merge(m1, m2, **ratios)
    got = effective(merged)
    for name in ("transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.add_v_proj.weight"):
        assert torch.equal(got[name], w2[name])
    name = "single_transformer_blocks.0.attn.to_k.weight"
    assert torch.equal(got[name], w1[name])
    for name in ("norm_out.linear.weight", "proj_out.weight"):
        torch.testing.assert_close(got[name], 0.5 * (w1[name] + w2[name]), rtol=0, atol=1e-6)


def test_weights_shaped_differently_are_left_alone(base):
    m1, _, _ = load(base, "sd1", 0)
    m2, _, _ = load(base, "sd2", 0)  # another UNet: some names are the same, their shapes are not
    (merged,) = mm.ModelMergeSimple().merge(m1, m2, 0.5)
    assert torch.equal(effective(merged)[CONV], weights(m1)[CONV])


def header(path) -> tuple[dict, dict]:
    with open(path, "rb") as f:
        entries = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return entries.pop("__metadata__", {}), entries


# Keys of the tiny files that ComfyUI does not write back: the schedule and EMA bookkeeping of released SD1 files,
# SD1's CLIP position ids (ComfyUI's CLIP has none) and OpenCLIP's logit scale (comfyd does not keep it: it only
# matters for CLIP's image-text scores).
NOT_WRITTEN = ("alphas_cumprod", "model_ema.decay", "cond_stage_model.transformer.text_model.embeddings.position_ids",
               "model.logit_scale")


@pytest.mark.parametrize("family", WRITERS)
def test_checkpoint_save_writes_the_released_layout(base, family):
    model, clip, vae = load(base, family, 0)
    mm.CheckpointSave().save(model, clip, vae, "checkpoints/ComfyUI", prompt={"1": {"class_type": "X"}},
                             extra_pnginfo={"workflow": {"nodes": []}})
    path = base / "output" / "checkpoints" / "ComfyUI_00001_.safetensors"
    metadata, entries = header(path)
    _, source = header(base / "models" / "checkpoints" / f"{family}-0.safetensors")
    assert set(entries) == {k for k in source if not k.endswith(NOT_WRITTEN)}
    assert {k: v["shape"] for k, v in entries.items()} == {k: source[k]["shape"] for k in entries}
    with safe_open(path, "pt") as saved_file, safe_open(base / "models" / "checkpoints" / f"{family}-0.safetensors",
                                                        "pt") as original:
        for key in entries:  # fp16 weights loaded as fp32 on the CPU, written as held: the same values
            assert torch.equal(saved_file.get_tensor(key).to(original.get_tensor(key).dtype),
                               original.get_tensor(key)), key
    assert metadata["prompt"] == '{"1": {"class_type": "X"}}' and metadata["workflow"] == '{"nodes": []}'
    assert metadata["modelspec.predict_key"] == "epsilon"
    if family in ("sdxl", "sdxl_refiner"):
        kind = "base" if family == "sdxl" else "refiner"
        assert metadata["modelspec.architecture"] == f"stable-diffusion-xl-v1-{kind}"
        assert metadata["modelspec.title"] == "ComfyUI 1" and metadata["modelspec.implementation"] == "sgm"
    else:
        assert "modelspec.architecture" not in metadata
    mm.CheckpointSave().save(model, clip, vae, "checkpoints/ComfyUI")
    assert header(base / "output" / "checkpoints" / "ComfyUI_00002_.safetensors")[0]["prompt"] == ""


def test_model_save_of_a_v_prediction_model_with_zero_snr(base):
    path = base / "models" / "checkpoints" / "v.safetensors"
    fx.write_sd2(path, v_pred=True)
    model, _, _ = CheckpointLoaderSimple().load_checkpoint("v.safetensors")
    from nodes.model_sampling import ModelSamplingDiscrete

    (patched,) = ModelSamplingDiscrete().patch(model, "v_prediction", True)
    mm.ModelSave().save(patched, "diffusion_models/ComfyUI")
    metadata, entries = header(base / "output" / "diffusion_models" / "ComfyUI_00001_.safetensors")
    assert metadata["modelspec.predict_key"] == "v"
    assert {"v_pred", "ztsnr"} <= set(entries)
    assert all(k.startswith("model.diffusion_model.") for k in set(entries) - {"v_pred", "ztsnr"})


def test_clip_and_vae_save(base):
    _, clip, vae = load(base, "sdxl", 0)
    mm.CLIPSave().save(clip, "clip/ComfyUI", prompt={})
    mm.VAESave().save(vae, "vae/ComfyUI_vae")
    metadata, l_keys = header(base / "output" / "clip" / "ComfyUI_clip_l_00001_.safetensors")
    _, g_keys = header(base / "output" / "clip" / "ComfyUI_clip_g_00001_.safetensors")
    assert metadata == {"format": "pt", "prompt": "{}"}
    # the names ComfyUI gives its text encoders: transformers' (bigG's too), without the checkpoint prefix
    assert "text_model.encoder.layers.0.self_attn.q_proj.weight" in l_keys and "text_projection.weight" in g_keys
    assert all(k.startswith(("text_model.", "text_projection.")) for k in (*l_keys, *g_keys))
    _, vae_keys = header(base / "output" / "vae" / "ComfyUI_vae_00001_.safetensors")
    _, source = header(base / "models" / "checkpoints" / "sdxl-0.safetensors")
    assert {k: v["shape"] for k, v in vae_keys.items()} == {
        k.removeprefix(saving.VAE_PREFIX): v["shape"] for k, v in source.items() if k.startswith(saving.VAE_PREFIX)}


def test_a_flux_merge_saves_in_the_original_layout_and_loads_back(base):
    from nodes.loaders import UNETLoader
    from tests.fixtures import flux as flux_fixture

    for seed in (0, 1):
        flux_fixture.write_flux(base / "models" / "diffusion_models" / f"flux-{seed}.safetensors", seed)
    m1, m2 = ((UNETLoader().load_unet(f"flux-{seed}.safetensors")[0]) for seed in (0, 1))
    (merged,) = mm.ModelMergeSimple().merge(m1, m2, 0.25)
    mm.ModelSave().save(merged, "diffusion_models/merged")
    metadata, entries = header(base / "output" / "diffusion_models" / "merged_00001_.safetensors")
    _, source = header(base / "models" / "diffusion_models" / "flux-0.safetensors")
    assert {k: v["shape"] for k, v in entries.items()} == {k: v["shape"] for k, v in source.items()}
    assert set(metadata) == {"prompt"}  # ComfyUI's FLUX model type has no modelspec entries
    shutil.copy(base / "output" / "diffusion_models" / "merged_00001_.safetensors",
                base / "models" / "diffusion_models" / "merged.safetensors")
    (reloaded,) = UNETLoader().load_unet("merged.safetensors")
    expected = effective(merged)
    for name, value in weights(reloaded).items():  # bf16 in the files, bf16 / fp32 when loaded: rounded once
        assert torch.equal(value, expected[name].to(value.dtype)), name
    with pytest.raises(ValueError, match="saving flux models with their text encoders and VAE is not supported"):
        saving.checkpoint_state_dict(merged, vae=object())


def test_other_dit_models_are_refused(base):
    from nodes.loaders import UNETLoader
    from tests.fixtures import sd3 as sd3_fixture

    sd3_fixture.write_sd3(base / "models" / "diffusion_models" / "sd3.safetensors")
    (model,) = UNETLoader().load_unet("sd3.safetensors")
    with pytest.raises(ValueError, match="saving sd3 models is not supported"):
        mm.ModelSave().save(model, "diffusion_models/ComfyUI")


async def test_a_saved_merge_loads_back_and_samples_the_same_image(client, settings):
    """Two checkpoints merged, a LoRA on top, sampled and saved in one prompt; the saved file, loaded by
    CheckpointLoaderSimple, samples the same image."""
    checkpoints = settings.base_directory / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    fx.write_sd15(checkpoints / "a.safetensors", 0)
    fx.write_sd15(checkpoints / "b.safetensors", 1)
    (settings.base_directory / "models" / "loras").mkdir(parents=True, exist_ok=True)
    save_file(sd1_lora_tensors(3), str(settings.base_directory / "models" / "loras" / "style.safetensors"))
    merged = default_workflow("a.safetensors", prefix="merged")
    merged.update({
        "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}},
        "11": {"class_type": "ModelMergeSimple", "inputs": {"model1": ["4", 0], "model2": ["10", 0], "ratio": 0.4}},
        "12": {"class_type": "CLIPMergeSimple", "inputs": {"clip1": ["4", 1], "clip2": ["10", 1], "ratio": 0.7}},
        "13": {"class_type": "LoraLoader", "inputs": {"model": ["11", 0], "clip": ["12", 0],
                                                      "lora_name": "style.safetensors", "strength_model": 0.5,
                                                      "strength_clip": 0.5}},
        "14": {"class_type": "CheckpointSave", "inputs": {"model": ["13", 0], "clip": ["13", 1], "vae": ["10", 2],
                                                          "filename_prefix": "checkpoints/merged"}},
    })
    merged["3"]["inputs"]["model"] = ["13", 0]
    for node in ("6", "7"):
        merged[node]["inputs"]["clip"] = ["13", 1]
    merged["8"]["inputs"]["vae"] = ["10", 2]
    entries = []
    for prompt in (merged, default_workflow("a.safetensors", prefix="plain")):
        prompt_id, messages = await run_prompt(client, prompt)
        assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
        entries.append(await wait_history(client, prompt_id))
    shutil.copy(settings.base_directory / "output" / "checkpoints" / "merged_00001_.safetensors",
                checkpoints / "merged.safetensors")
    prompt_id, messages = await run_prompt(client, default_workflow("merged.safetensors", prefix="reloaded"))
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    reloaded = saved(settings, await wait_history(client, prompt_id))[0].astype(int)
    image, plain = (saved(settings, entry)[0].astype(int) for entry in entries)
    assert np.abs(image - plain).mean() > 5  # the merge and LoRA changed the image
    assert np.abs(reloaded - image).max() <= 1
