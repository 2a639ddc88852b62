"""SDXL revision (unCLIP conditioning on CLIP vision embeddings) through the real app, shaped like the
sdxl_revision_text_prompts / sdxl_revision_zero_positive templates, on a tiny SDXL and a tiny CLIP-G stand-in."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nodes import clip_vision
from tests.e2e.test_families import place, run_ok
from tests.e2e.test_txt2img import saved
from tests.fixtures.checkpoints import write_sdxl
from tests.fixtures.clip_vision import write_clip_vision


@pytest.fixture
def registry(registry):
    if "CLIPVisionLoader" not in registry:  # until the module is a built-in
        registry.register_module(clip_vision)
    return registry


def provide(settings) -> str:
    checkpoint = place(settings, "sd_xl_base_1.0.safetensors", write_sdxl)
    folder = settings.base_directory / "models" / "clip_vision"
    folder.mkdir(parents=True, exist_ok=True)
    write_clip_vision(folder / "clip_vision_g.safetensors")
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 96, dtype=np.uint8)
    Image.fromarray(np.dstack([np.tile(ramp, (64, 1))] * 3)).save(settings.base_directory / "input" / "one.png")
    Image.fromarray(np.full((80, 48, 3), (200, 40, 90), np.uint8)).save(settings.base_directory / "input" / "two.png")
    return checkpoint


def revision(checkpoint: str, *, zero_positive: bool, strength: float = 0.75, prefix: str = "rev") -> dict:
    """Text (or zeroed text) positive + two images at ``strength``, KSampler at 64 px, 2 steps."""
    positive_text = ["6", 0]
    prompt = {
        "40": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "39": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip_vision_g.safetensors"}},
        "34": {"class_type": "LoadImage", "inputs": {"image": "one.png"}},
        "38": {"class_type": "LoadImage", "inputs": {"image": "two.png"}},
        "13": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["39", 0], "image": ["34", 0],
                                                            "crop": "center"}},
        "36": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["39", 0], "image": ["38", 0],
                                                            "crop": "none"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["40", 1],
                                                         "text": "" if zero_positive else "car, city, anime style"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["40", 1], "text": "text, watermark"}},
        "19": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": positive_text,
                                                              "clip_vision_output": ["13", 0],
                                                              "strength": strength, "noise_augmentation": 0.0}},
        "37": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["19", 0],
                                                              "clip_vision_output": ["36", 0],
                                                              "strength": strength, "noise_augmentation": 0.1}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["40", 0], "seed": 133632471276133, "steps": 2, "cfg": 8.0, "sampler_name": "dpmpp_3m_sde_gpu",
            "scheduler": "exponential", "denoise": 1.0, "positive": ["37", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["40", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }
    if zero_positive:
        prompt["42"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
        prompt["19"]["inputs"]["conditioning"] = ["42", 0]
    return prompt


@pytest.mark.parametrize("zero_positive", [False, True], ids=["text_prompts", "zero_positive"])
async def test_revision_graph_runs_and_the_images_steer_it(client, settings, zero_positive):
    checkpoint = provide(settings)
    steered = saved(settings, await run_ok(client, revision(checkpoint, zero_positive=zero_positive)))[0]
    assert steered.shape == (64, 64, 3) and steered.std() > 0
    # strength 0 leaves the conditioning as it was, so only the images can make the difference
    plain = saved(settings, await run_ok(client, revision(checkpoint, zero_positive=zero_positive, strength=0.0,
                                                          prefix="plain")))[0]
    assert not np.array_equal(steered, plain)
