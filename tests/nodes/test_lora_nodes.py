"""LoraLoader / LoraLoaderModelOnly: declarations against upstream, what they return, and LoRA txt2img end to end
(the LoRA changes the image; the same prompt without it afterwards gives the original image back bit for bit)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine import Settings, folders
from engine.folders import Folders
from nodes import lora as lora_nodes
from nodes.loaders import CheckpointLoaderSimple
from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures import checkpoints as fx
from tests.nodes.test_latent_nodes import assert_matches_capture


def sd1_lora_tensors(seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    """A kohya LoRA (LDM names) on every linear and convolution of the tiny SD1 UNet and text encoder's
    attention / MLP layers, written from the fixture's key layout."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in sorted(fx.checkpoint_shapes("sd1").items()):
        if key.startswith(fx.UNET) and key.endswith(".weight") and len(shape) in (2, 4):
            base = "lora_unet_" + key[len(fx.UNET):].removesuffix(".weight").replace(".", "_")
        elif key.startswith(fx.SD1_CLIP + "encoder.layers.") and key.endswith(("_proj.weight", "fc1.weight",
                                                                               "fc2.weight")):
            base = "lora_te_text_model_" + key[len(fx.SD1_CLIP):].removesuffix(".weight").replace(".", "_")
        else:
            continue
        tail = (1, 1) if len(shape) == 4 else ()
        tensors[base + ".lora_up.weight"] = torch.randn((shape[0], rank, *tail), generator=g) * 0.3
        tensors[base + ".lora_down.weight"] = torch.randn((rank, *shape[1:]), generator=g) * 0.3
        tensors[base + ".alpha"] = torch.tensor(float(rank))
    return tensors


@pytest.fixture
def model_folders(tmp_path, monkeypatch):
    """Active model folders holding a tiny SD1.5 checkpoint and a LoRA for it."""
    active = Folders.from_settings(Settings(base_directory=tmp_path, cpu=True))
    active.create_dirs()
    monkeypatch.setattr(folders, "_active", active)
    return tmp_path / "models"


@pytest.mark.parametrize("name", sorted(lora_nodes.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(model_folders, name):
    assert_matches_capture(lora_nodes, name)


@pytest.fixture
def sd1(model_folders):
    fx.write_sd15(model_folders / "checkpoints" / "tiny.safetensors")
    save_file(sd1_lora_tensors(0), str(model_folders / "loras" / "style.safetensors"))
    return CheckpointLoaderSimple().load_checkpoint("tiny.safetensors")


def test_lora_loader_returns_patched_clones(sd1):
    model, clip, _ = sd1
    assert lora_nodes.LoraLoader.INPUT_TYPES()["required"]["lora_name"][0] == ["style.safetensors"]
    new_model, new_clip = lora_nodes.LoraLoader().load_lora(model, clip, "style.safetensors", 0.8, -0.5)
    assert new_model is not model and new_clip is not clip
    assert model.patches == [] and clip.patches == []
    assert new_model.unet is model.unet and new_clip.models == clip.models  # weights are shared, patched on use
    [(patch, strength)] = new_model.patches
    assert strength == 0.8 and [s for _, s in new_clip.patches] == [-0.5]
    assert len(patch.deltas("unet", dict(model.unet.named_parameters()))) > 0
    again, _ = lora_nodes.LoraLoader().load_lora(model, clip, "style.safetensors", 0.8, -0.5)
    assert again.patches[0][0] is patch  # the file is read once: the same patch keeps the manager's state valid


def test_zero_strengths_return_the_inputs(sd1):
    model, clip, _ = sd1
    loader = lora_nodes.LoraLoader()
    assert loader.load_lora(model, clip, "style.safetensors", 0, 0) == (model, clip)
    only_clip_model, only_clip = loader.load_lora(model, clip, "style.safetensors", 0, 1.0)
    assert [s for _, s in only_clip_model.patches] == [0] and [s for _, s in only_clip.patches] == [1.0]
    assert lora_nodes.LoraLoaderModelOnly().load_lora_model_only(model, "style.safetensors", 0) == (model,)


def test_model_only_leaves_clip_alone_and_reports_its_keys(sd1, caplog):
    model, _, _ = sd1
    with caplog.at_level(logging.WARNING, logger="comfyd.lora"):
        (new_model,) = lora_nodes.LoraLoaderModelOnly().load_lora_model_only(model, "style.safetensors", 1.5)
    assert [s for _, s in new_model.patches] == [1.5]
    text_keys = sum(k.startswith("lora_te_") for k in sd1_lora_tensors(0))
    [warning] = [r.message for r in caplog.records if "lora key not loaded" in r.message]
    assert warning.startswith(f"lora key not loaded: {text_keys} of ")


# -- end to end ---------------------------------------------------------------------------------------------------


@pytest.fixture
def registry(registry):
    registry.register_module(lora_nodes)
    return registry


def lora_workflow(ckpt: str, lora: str, *, prefix: str, strength_model=1.0, strength_clip=1.0):
    prompt = default_workflow(ckpt, prefix=prefix)
    prompt["10"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": lora,
                                                           "strength_model": strength_model,
                                                           "strength_clip": strength_clip}}
    prompt["3"]["inputs"]["model"] = ["10", 0]
    prompt["6"]["inputs"]["clip"] = ["10", 1]
    prompt["7"]["inputs"]["clip"] = ["10", 1]
    return prompt


async def image_of(client, settings, prompt):
    prompt_id, messages = await run_prompt(client, prompt)
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    [image] = saved(settings, await wait_history(client, prompt_id))
    return image


async def test_lora_changes_the_image_and_removing_it_restores_the_original(client, settings):
    models = settings.base_directory / "models"
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    (models / "loras").mkdir(parents=True, exist_ok=True)
    fx.write_sd15(models / "checkpoints" / "tiny.safetensors")
    save_file(sd1_lora_tensors(0), str(models / "loras" / "style.safetensors"))

    original = await image_of(client, settings, default_workflow("tiny.safetensors", prefix="plain"))
    with_lora = await image_of(client, settings, lora_workflow("tiny.safetensors", "style.safetensors", prefix="lora"))
    clip_only = await image_of(client, settings, lora_workflow("tiny.safetensors", "style.safetensors",
                                                               prefix="clip", strength_model=0.0))
    # the cache kept only the last prompt's outputs, so this samples again, on the same (shared) UNet
    again = await image_of(client, settings, default_workflow("tiny.safetensors", prefix="again"))
    assert not np.array_equal(original, with_lora)
    assert not np.array_equal(original, clip_only) and not np.array_equal(with_lora, clip_only)
    assert np.array_equal(original, again)
