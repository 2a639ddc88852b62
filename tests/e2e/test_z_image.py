"""Z-Image Turbo (the default workflow of the current frontend) end to end on tiny random-weight files: the three
loaders, ModelSamplingAuraFlow, EmptySD3LatentImage, KSampler on a rectified-flow model, the FLUX VAE.

The image is checked against diffusers' own ZImagePipeline run on the same weights, noise and sigmas: that covers
the prompt template, the text encoder layer, the network's time direction and sign, the latent shift/scale and
the VAE decode, none of which a random-weight run can show by looking at the picture.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.text.qwen_tokenizer import qwen_tokenizer
from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import saved
from tests.fixtures import z_image as fixture

PROMPT = "a fox playing guitar by a campfire under the milky way"
SEED, STEPS, SHIFT = 7, 3, 3.0
# The "simple" schedule takes entries 1000, 667 and 334 (every 1000/steps-th from the top) of the table of shifted
# times t = i / 1000: sigma = shift * t / (1 + (shift - 1) * t).
SIGMAS = [SHIFT * t / (1 + (SHIFT - 1) * t) for t in (1.0, 0.667, 0.334)]


@pytest.fixture
def files(settings):
    return fixture.install(settings.base_directory / "models")


def z_image_workflow(*, sampler="euler", steps=STEPS, cfg=1.0, negative="ConditioningZeroOut", size=64):
    names = fixture.DEFAULT_NAMES
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": names["diffusion_models"],
                                                      "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": names["text_encoders"], "type": "lumina2"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": names["vae"]}},
        "4": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": SHIFT}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": PROMPT}},
        "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": SEED, "steps": steps, "cfg": cfg, "sampler_name": sampler,
            "scheduler": "simple", "denoise": 1.0, "positive": ["5", 0], "negative": ["10", 0],
            "latent_image": ["6", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "z-image"}},
    }
    if negative == "ConditioningZeroOut":
        prompt["10"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["5", 0]}}
    else:
        prompt["10"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": negative}}
    return prompt


def diffusers_reference(files, size=64, sigmas=SIGMAS, latents=None) -> np.ndarray:
    """ZImagePipeline on the same files (through comfyd's loaders) from `latents` (default: the KSampler's noise)
    down `sigmas` (default: the simple schedule)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline

    from engine.models.load import load_vae_file, open_checkpoint
    from engine.models.qwen_text import load_qwen_file
    from engine.models.flux import LATENT_SCALE, LATENT_SHIFT
    from engine.models.z_image import load_z_image

    cpu = torch.device("cpu")
    with open_checkpoint(files["diffusion_models"], cpu) as file:
        _, transformer = load_z_image(file, cpu, torch.float32)
    _, text_encoder = load_qwen_file(files["text_encoders"], cpu, torch.float32)
    vae = load_vae_file(files["vae"], cpu, torch.float32)
    vae.register_to_config(scaling_factor=LATENT_SCALE, shift_factor=LATENT_SHIFT)
    tokenizer = qwen_tokenizer()
    # Qwen3's chat template for one user message with the assistant turn opened (thinking enabled: no empty
    # <think> block); the pipeline renders the prompt through it.
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    # shift 1 and no dynamic shifting: the given (already shifted) sigmas are used as they are.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe = ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer)
    if latents is None:
        latents = torch.randn([1, 16, size // 8, size // 8], generator=torch.manual_seed(SEED))
    return pipe(PROMPT, height=size, width=size, sigmas=sigmas, guidance_scale=0.0, latents=latents,
                output_type="np", max_sequence_length=64).images[0]


async def test_z_image_turbo_matches_diffusers_pipeline(client, settings, files):
    prompt_id, messages = await run_prompt(client, z_image_workflow())
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    entry = await wait_history(client, prompt_id)
    image = saved(settings, entry)[0].astype(np.float32) / 255
    assert [p["value"] for p in of_type(messages, "progress") if p["node"] == "7"] == [1, 2, 3]
    reference = diffusers_reference(files)
    assert image.shape == reference.shape == (64, 64, 3)
    assert image.std() > 0.02, "the image must not be flat for the comparison to mean anything"
    difference = np.abs(image - reference)
    assert difference.max() <= 2 / 255 and difference.mean() <= 0.5 / 255, (difference.max(), difference.mean())


async def test_prompt_and_sampler_change_the_image(client, settings, files):
    base = saved(settings, await run_ok(client, z_image_workflow()))[0].astype(int)
    other_prompt = z_image_workflow()
    other_prompt["5"]["inputs"]["text"] = "a lighthouse on a rocky coast"
    other = saved(settings, await run_ok(client, other_prompt))[0].astype(int)
    assert np.abs(base - other).mean() > 1, "the prompt must reach the model"
    for sampler in ("res_multistep", "euler_ancestral", "dpmpp_2m"):
        image = saved(settings, await run_ok(client, z_image_workflow(sampler=sampler)))[0]
        assert image.shape == (64, 64, 3) and image.std() > 0


async def test_cfg_with_a_negative_prompt_of_another_length(client, settings, files):
    # cond and uncond have different token counts, so they run as separate model calls.
    entry = await run_ok(client, z_image_workflow(cfg=3.0, negative="blurry"))
    assert saved(settings, entry)[0].shape == (64, 64, 3)


async def test_wrong_text_encoder_type_is_a_clear_error(client, settings, files):
    prompt = z_image_workflow()
    prompt["2"]["inputs"]["type"] = "stable_diffusion"
    prompt_id, messages = await run_prompt(client, prompt)
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "2" and "qwen_3_4b.safetensors" in error["exception_message"]


async def test_conditioning_from_another_family_is_a_clear_error(client, settings, files):
    from tests.fixtures.checkpoints import write_sd15

    path = settings.base_directory / "models" / "checkpoints" / "sd15.safetensors"
    write_sd15(path)
    prompt = z_image_workflow()
    prompt["11"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}}
    prompt["5"]["inputs"]["clip"] = ["11", 1]
    _, messages = await run_prompt(client, prompt)
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "7" and "CLIPLoader type lumina2" in error["exception_message"]
    # the worker keeps serving
    entry = await run_ok(client, z_image_workflow())
    assert entry["status"]["status_str"] == "success"


async def test_z_image_img2img_matches_diffusers(client, settings, files):
    """LoadImage -> VAEEncode (FLUX VAE) -> KSampler at denoise 0.5: the encoded latent goes into the model's space
    (shift, scale), is noised the rectified-flow way at the first sigma of the truncated schedule, and sampled."""
    from PIL import Image

    from engine.models.load import load_vae_file
    from engine.models.flux import LATENT_SCALE, LATENT_SHIFT

    size = 64
    yy, xx = np.mgrid[0:size, 0:size]
    pixels = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(settings.base_directory / "input" / "gradient.png")
    prompt = z_image_workflow()
    prompt["12"] = {"class_type": "LoadImage", "inputs": {"image": "gradient.png"}}
    prompt["6"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["3", 0]}}
    prompt["7"]["inputs"]["denoise"] = 0.5
    entry = await run_ok(client, prompt)
    image = saved(settings, entry)[0].astype(np.float32) / 255

    # denoise 0.5 of 3 steps: the last 3 steps of a 6-step simple schedule, t = 0.5, 0.334, 0.167
    sigmas = [SHIFT * t / (1 + (SHIFT - 1) * t) for t in (0.5, 0.334, 0.167)]
    vae = load_vae_file(files["vae"], "cpu", torch.float32)
    with torch.no_grad():
        encoded = vae.encode(torch.from_numpy(pixels).float().div(255).movedim(-1, 0)[None] * 2 - 1).latent_dist.mode()
    x0 = (encoded - LATENT_SHIFT) * LATENT_SCALE
    noise = torch.randn(x0.shape, generator=torch.manual_seed(SEED))
    start = sigmas[0] * noise + (1 - sigmas[0]) * x0
    reference = diffusers_reference(files, sigmas=sigmas, latents=start)
    difference = np.abs(image - reference)
    assert difference.max() <= 2 / 255 and difference.mean() <= 0.5 / 255, (difference.max(), difference.mean())


async def test_decoding_with_another_familys_vae_is_a_clear_error(client, settings, files):
    from tests.fixtures.checkpoints import write_sd15

    write_sd15(settings.base_directory / "models" / "checkpoints" / "sd15.safetensors")
    prompt = z_image_workflow()
    prompt["11"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}}
    prompt["8"]["inputs"]["vae"] = ["11", 2]
    _, messages = await run_prompt(client, prompt)
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "8" and "16 channels" in error["exception_message"]
