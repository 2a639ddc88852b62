"""LoRAs on Z-Image through the live app: LoraLoaderModelOnly / LoraLoader on UNETLoader's MODEL and the Qwen3 CLIP.

The reference is independent of comfyd's LoRA code: a second model file whose weights are the fixture's plus
strength * up @ down, added to the original layout's tensors (the fused q/k/v among them) as they are in the file;
UNETLoader on it must give the LoRA's image.
"""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import save_file

from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import saved
from tests.e2e.test_z_image import z_image_workflow
from tests.fixtures import z_image as fixture

STRENGTH, CLIP_STRENGTH = 0.8, 1.5
MERGED = {"diffusion_models": "z_image_merged.safetensors", "text_encoders": "qwen_merged.safetensors"}


@pytest.fixture
def files(settings):
    """The fixture's three files, LoRAs for it in two namings, and the LoRAs merged into model / text-encoder files."""
    models = settings.base_directory / "models"
    out = fixture.install(models)
    factors, qwen_factors = fixture.z_image_lora_factors(seed=11), fixture.qwen_lora_factors(seed=12)
    (models / "loras").mkdir(exist_ok=True)
    loras = {"fused": fixture.lora_tensors(factors, "comfy"), "diffusers": fixture.lora_tensors(factors, "diffusers"),
             "with_text": {**fixture.lora_tensors(factors, "comfy"), **fixture.lora_tensors(qwen_factors, "qwen")}}
    for name, tensors in loras.items():
        save_file(tensors, str(models / "loras" / f"{name}.safetensors"))
    fixture.write_merged(models / "diffusion_models" / MERGED["diffusion_models"], out["diffusion_models"], factors,
                         STRENGTH, "model.diffusion_model.")
    fixture.write_merged(models / "text_encoders" / MERGED["text_encoders"], out["text_encoders"], qwen_factors,
                         CLIP_STRENGTH, "model.")
    return out


def workflow(lora=None, *, clip_strength=None, unet=None, text_encoder=None):
    """Z-Image Turbo's workflow (2 steps), with LoraLoaderModelOnly (or LoraLoader when ``clip_strength`` is given)
    between the loaders and their users."""
    prompt = z_image_workflow(steps=2)
    if unet:
        prompt["1"]["inputs"]["unet_name"] = unet
    if text_encoder:
        prompt["2"]["inputs"]["clip_name"] = text_encoder
    if lora is None:
        return prompt
    inputs = {"model": ["1", 0], "lora_name": f"{lora}.safetensors", "strength_model": STRENGTH}
    if clip_strength is None:
        prompt["11"] = {"class_type": "LoraLoaderModelOnly", "inputs": inputs}
    else:
        prompt["11"] = {"class_type": "LoraLoader",
                        "inputs": {**inputs, "clip": ["2", 0], "strength_clip": clip_strength}}
        prompt["5"]["inputs"]["clip"] = ["11", 1]
    prompt["4"]["inputs"]["model"] = ["11", 0]
    return prompt


async def image(client, settings, prompt) -> np.ndarray:
    entry = await run_ok(client, prompt)
    return saved(settings, entry)[0].astype(int)


async def test_lora_with_fused_qkv_gives_the_merged_weights_image_and_goes_away_after(client, settings, files):
    base = await image(client, settings, workflow())
    with_lora = await image(client, settings, workflow("fused"))
    merged = await image(client, settings, workflow(unet=MERGED["diffusion_models"]))
    assert np.abs(with_lora - base).mean() > 2, "the LoRA must move the image for the comparison to mean anything"
    assert np.abs(with_lora - merged).max() <= 1
    assert np.array_equal(await image(client, settings, workflow()), base)  # base weights restored exactly


async def test_diffusers_names_give_the_same_image_as_the_fused_layout(client, settings, files):
    fused = await image(client, settings, workflow("fused"))
    diffusers = await image(client, settings, workflow("diffusers"))
    assert np.abs(fused - diffusers).max() <= 1


async def test_lora_loader_applies_the_model_and_the_qwen_text_encoder_parts(client, settings, files):
    both = await image(client, settings, workflow("with_text", clip_strength=CLIP_STRENGTH))
    merged = await image(client, settings, workflow(unet=MERGED["diffusion_models"],
                                                    text_encoder=MERGED["text_encoders"]))
    model_only = await image(client, settings, workflow("with_text", clip_strength=0.0))
    assert np.abs(both - merged).max() <= 1
    assert np.abs(both - model_only).mean() > 2, "the text-encoder part must reach the conditioning"
    assert np.abs(model_only - await image(client, settings, workflow("fused"))).max() <= 1
