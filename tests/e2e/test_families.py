"""SDXL (base + refiner), SD2 v-prediction, img2img and inpainting through the real app on tiny checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures.checkpoints import write_sd2, write_sd15, write_sdxl, write_sdxl_refiner


def place(settings, name, writer, **kwargs):
    path = settings.base_directory / "models" / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(path, **kwargs)
    return name


async def run_ok(client, prompt):
    prompt_id, messages = await run_prompt(client, prompt)
    errors = of_type(messages, "execution_error")
    assert not errors, errors[0]["exception_message"] + "".join(errors[0]["traceback"])
    return await wait_history(client, prompt_id)


async def test_sdxl_base_then_refiner(client, settings):
    base = place(settings, "xl.safetensors", write_sdxl)
    refiner = place(settings, "xl-refiner.safetensors", write_sdxl_refiner)
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": base}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": refiner}},
        "3": {"class_type": "CLIPTextEncodeSDXL", "inputs": {
            "clip": ["1", 1], "width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0, "target_width": 1024,
            "target_height": 1024, "text_g": "a castle", "text_l": "a castle, detailed, " * 10}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "5": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"clip": ["2", 1], "ascore": 6.0, "width": 1024,
                                                                     "height": 1024, "text": "a castle"}},
        "6": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"clip": ["2", 1], "ascore": 2.5, "width": 1024,
                                                                     "height": 1024, "text": "blurry"}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["1", 0], "add_noise": "enable", "noise_seed": 5, "steps": 4, "cfg": 6.0,
            "sampler_name": "euler", "scheduler": "normal", "positive": ["3", 0], "negative": ["4", 0],
            "latent_image": ["7", 0], "start_at_step": 0, "end_at_step": 2, "return_with_leftover_noise": "enable"}},
        "9": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["2", 0], "add_noise": "disable", "noise_seed": 5, "steps": 4, "cfg": 6.0,
            "sampler_name": "euler", "scheduler": "normal", "positive": ["5", 0], "negative": ["6", 0],
            "latent_image": ["8", 0], "start_at_step": 2, "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["2", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "xl"}},
    }
    entry = await run_ok(client, prompt)
    image = saved(settings, entry, "11")[0]
    assert image.shape == (64, 64, 3) and image.std() > 0


async def test_sd2_v_prediction(client, settings):
    name = place(settings, "sd2v.safetensors", write_sd2, v_pred=True)
    entry = await run_ok(client, default_workflow(name, prefix="sd2"))
    assert saved(settings, entry)[0].shape == (64, 64, 3)


async def test_img2img_and_inpainting(client, settings):
    name = place(settings, "sd15.safetensors", write_sd15)
    rgb = (np.arange(64 * 64 * 3).reshape(64, 64, 3) % 251).astype(np.uint8)
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[16:48, 16:48] = 0  # transparent square = area to inpaint (LoadImage's mask is 1 - alpha)
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.dstack([rgb, alpha])).save(settings.base_directory / "input" / "src.png")

    img2img = default_workflow(name, prefix="i2i")
    img2img["10"] = {"class_type": "LoadImage", "inputs": {"image": "src.png"}}
    img2img["5"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    img2img["3"]["inputs"]["denoise"] = 0.5
    entry = await run_ok(client, img2img)
    assert saved(settings, entry)[0].shape == (64, 64, 3)

    inpaint = default_workflow(name, prefix="inpaint")
    inpaint["10"] = {"class_type": "LoadImage", "inputs": {"image": "src.png"}}
    inpaint["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    inpaint["5"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": ["10", 1]}}
    entry = await run_ok(client, inpaint)
    assert saved(settings, entry)[0].shape == (64, 64, 3)


def test_noise_mask_keeps_the_latent_outside_the_mask(tmp_path):
    """At sigma 0 the sampler returns the source latent wherever the noise mask is 0 (latent space: a random
    VAE mixes pixels globally, so pixels cannot show it)."""
    import torch

    from engine.models.diffusion import DiffusionModel
    from engine.models.load import load_checkpoint
    from engine.models.manager import ModelManager
    from engine.sampling.run import ksample

    write_sd15(tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors", "cpu", torch.float32)
    model = DiffusionModel(loaded.unet, "sd1", "eps", 0.18215, manager=ModelManager(torch.device("cpu")))
    cond = [[torch.randn(1, 77, loaded.unet.config.cross_attention_dim), {}]]
    source = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1.0
    out = ksample(model, {"samples": source, "noise_mask": mask}, seed=3, steps=3, cfg=5.0, sampler_name="euler",
                  scheduler="normal", positive=cond, negative=cond)["samples"]
    assert torch.allclose(out[..., :2, :], source[..., :2, :], atol=1e-5)
    assert not torch.allclose(out[..., 3:5, 3:5], source[..., 3:5, 3:5], atol=1e-2)


async def test_sd15_inpainting_model_with_vae_encode_for_inpaint(client, settings):
    name = place(settings, "sd15-inpaint.safetensors", write_sd15, inpaint=True)
    prompt = default_workflow(name, prefix="inp9")
    rgb = np.full((64, 64, 4), 200, np.uint8)
    rgb[16:48, 16:48, 3] = 0
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(settings.base_directory / "input" / "hole.png")
    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": "hole.png"}}
    prompt["5"] = {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2],
                                                                   "mask": ["10", 1], "grow_mask_by": 6}}
    entry = await run_ok(client, prompt)
    assert saved(settings, entry)[0].shape == (64, 64, 3)
