"""LoRAs on SD3 through the live app: LoraLoaderModelOnly on UNETLoader's MODEL in the tiny SD3 workflow.

The reference is independent of comfyd's LoRA code: a second model file whose weights are the fixture's plus
strength * up @ down, added to the original layout's tensors (the fused q/k/v among them) as they are in the file;
UNETLoader on it must give the LoRA's image.
"""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import save_file

from tests.e2e.test_families import run_ok
from tests.e2e.test_sd3 import sd3_workflow
from tests.e2e.test_txt2img import saved
from tests.engine.models.test_sd3_lora import LORA_LAYERS, sd3_lora_tensors
from tests.fixtures import sd3 as fixture
from tests.fixtures.z_image import lora_factors, write_merged

STRENGTH = 0.8
MERGED = "sd3_merged.safetensors"
LAYERS = {k: v for k, v in LORA_LAYERS.items() if ".attn2." not in k}  # the workflow's SD3 has no attn2


@pytest.fixture
def files(settings):
    """The SD3 workflow's files, one LoRA in ComfyUI's original-layout names and in diffusers' names, and the
    model file with the LoRA merged in."""
    models = settings.base_directory / "models"
    out = fixture.install(models)
    factors = lora_factors(fixture.sd3_shapes(prefix=""), LAYERS, seed=13)
    (models / "loras").mkdir(exist_ok=True)
    for naming in ("comfy", "diffusers"):
        save_file(sd3_lora_tensors(factors, naming, LAYERS), str(models / "loras" / f"{naming}.safetensors"))
    write_merged(models / "diffusion_models" / MERGED, out["model"], factors, STRENGTH, "model.diffusion_model.")
    return out


def workflow(lora=None, *, unet=None):
    prompt = sd3_workflow()
    if unet:
        prompt["1"]["inputs"]["unet_name"] = unet
    if lora:
        prompt["11"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
            "model": ["1", 0], "lora_name": f"{lora}.safetensors", "strength_model": STRENGTH}}
        prompt["6"]["inputs"]["model"] = ["11", 0]
    return prompt


async def image(client, settings, prompt) -> np.ndarray:
    return saved(settings, await run_ok(client, prompt))[0].astype(int)


async def test_lora_gives_the_merged_weights_image_and_goes_away_after(client, settings, files):
    base = await image(client, settings, workflow())
    with_lora = await image(client, settings, workflow("comfy"))
    merged = await image(client, settings, workflow(unet=MERGED))
    assert np.abs(with_lora - base).mean() > 2, "the LoRA must move the image for the comparison to mean anything"
    assert np.abs(with_lora - merged).max() <= 1
    assert np.abs(await image(client, settings, workflow("diffusers")) - with_lora).max() <= 1
    assert np.array_equal(await image(client, settings, workflow()), base)  # base weights restored exactly
