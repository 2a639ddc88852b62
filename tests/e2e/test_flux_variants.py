"""FLUX.1 Kontext, Fill and Canny / Depth as their official workflows wire them (ReferenceLatent,
InpaintModelConditioning, InstructPixToPixConditioning), each checked against diffusers' own pipeline for that
variant (FluxKontextPipeline, FluxFillPipeline, FluxControlPipeline) on the same tiny files, noise and sigmas: that
covers where the image, the mask and the reference tokens go and how they are placed."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from tests.e2e.test_families import run_ok
from tests.e2e.test_flux import (PROMPT, SEED, SIZE, assert_close_to, diffusers_reference, loaders,
                                 simple_schedule)
from tests.e2e.test_txt2img import saved
from tests.fixtures import flux as fixture

GUIDANCE = 2.5
VARIANTS = {"kontext": ("flux1-dev-kontext.safetensors", 16), "fill": ("flux1-fill-dev.safetensors", 96),
            "canny": ("flux1-canny-dev.safetensors", 32)}


@pytest.fixture
def files(settings):
    models = settings.base_directory / "models"
    out = fixture.install(models)
    for name, (file_name, channels) in VARIANTS.items():
        out[name] = fixture.write_flux(models / "diffusion_models" / file_name, seed=7,
                                       layout=dataclasses.replace(fixture.FluxLayout(), in_channels=channels))
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    pixels = np.stack([xx * 4, yy * 4, 255 - (xx + yy) * 2], -1).astype(np.uint8)
    Image.fromarray(pixels).save(settings.base_directory / "input" / "photo.png")
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 8:40] = 255
    Image.fromarray(np.dstack([pixels, 255 - mask])).save(settings.base_directory / "input" / "photo_masked.png")
    out["pixels"], out["mask"] = pixels, mask
    return out


def workflow(variant: str, conditioning: dict, latent) -> dict:
    """The variant's loaders, prompt and sampler around ``conditioning`` (extra nodes; "30" gives the positive and
    "31" the negative conditioning) and ``latent`` (the sampler's starting latent)."""
    prompt = {**loaders("dev"), **conditioning}
    prompt["1"]["inputs"]["unet_name"] = VARIANTS[variant][0]
    prompt["20"] = {"class_type": "LoadImage", "inputs": {"image": "photo_masked.png" if variant == "fill"
                                                           else "photo.png"}}
    prompt["32"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["4", 0]}}
    prompt["12"] = {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": SEED, "steps": 3, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
        "denoise": 1.0, "positive": ["30", 0], "negative": ["31", 0], "latent_image": latent}}
    return prompt


def encoded(files, pixels: np.ndarray) -> torch.Tensor:
    """The FLUX VAE's latent of ``pixels`` in model space, as the pipelines take precomputed image latents."""
    from engine.models.flux import LATENT_SCALE, LATENT_SHIFT
    from engine.models.load import load_vae_file

    vae = load_vae_file(files["vae"], "cpu", torch.float32)
    with torch.no_grad():
        latent = vae.encode(torch.from_numpy(pixels).float().div(255).movedim(-1, 0)[None] * 2 - 1).latent_dist.mode()
    return (latent - LATENT_SHIFT) * LATENT_SCALE


async def test_kontext_reference_image(client, settings, files):
    prompt = workflow("kontext", {
        "21": {"class_type": "VAEEncode", "inputs": {"pixels": ["20", 0], "vae": ["3", 0]}},
        "22": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["4", 0], "latent": ["21", 0]}},
        "30": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["22", 0], "guidance": GUIDANCE}},
        "31": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["32", 0], "latent": ["21", 0]}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
    }, ["7", 0])
    image = saved(settings, await run_ok(client, prompt))[0].astype(np.float32) / 255
    reference = diffusers_reference(files, files["kontext"], simple_schedule(), GUIDANCE, "FluxKontextPipeline",
                                    image=encoded(files, files["pixels"]), _auto_resize=False,
                                    max_area=SIZE * SIZE)
    assert_close_to(image, reference)
    without = workflow("kontext", {"30": {"class_type": "FluxGuidance",
                                          "inputs": {"conditioning": ["4", 0], "guidance": GUIDANCE}},
                                   "31": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["4", 0]}},
                                   "7": prompt["7"]}, ["7", 0])
    plain = saved(settings, await run_ok(client, without))[0].astype(np.float32) / 255
    assert np.abs(plain - image).mean() > 0.002, "the reference image must reach the model"


async def test_fill_inpaints_the_masked_area(client, settings, files):
    prompt = workflow("fill", {
        "30": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": GUIDANCE}},
        "33": {"class_type": "InpaintModelConditioning", "inputs": {
            "positive": ["30", 0], "negative": ["32", 0], "vae": ["3", 0], "pixels": ["20", 0], "mask": ["20", 1],
            "noise_mask": False}},
    }, ["33", 2])
    prompt["12"]["inputs"].update(positive=["33", 0], negative=["33", 1])
    image = saved(settings, await run_ok(client, prompt))[0].astype(np.float32) / 255
    reference = diffusers_reference(files, files["fill"], simple_schedule(), GUIDANCE, "FluxFillPipeline",
                                    image=Image.fromarray(files["pixels"]), mask_image=Image.fromarray(files["mask"]))
    assert_close_to(image, reference)


async def test_canny_model_takes_the_control_image(client, settings, files):
    prompt = workflow("canny", {
        "30": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": GUIDANCE}},
        "33": {"class_type": "InstructPixToPixConditioning", "inputs": {
            "positive": ["30", 0], "negative": ["32", 0], "vae": ["3", 0], "pixels": ["20", 0]}},
    }, ["33", 2])
    prompt["12"]["inputs"].update(positive=["33", 0], negative=["33", 1])
    image = saved(settings, await run_ok(client, prompt))[0].astype(np.float32) / 255
    reference = diffusers_reference(files, files["canny"], simple_schedule(), GUIDANCE, "FluxControlPipeline",
                                    control_image=Image.fromarray(files["pixels"]))
    assert_close_to(image, reference)
