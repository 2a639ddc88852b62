"""SD3 / SD3.5 end to end on tiny random-weight files in the layouts their workflows load: UNETLoader (or
CheckpointLoaderSimple), TripleCLIPLoader, VAELoader, ModelSamplingSD3, EmptySD3LatentImage, KSampler with CFG.

The image is checked against diffusers' StableDiffusion3Pipeline on the same weights, noise, sigmas and prompt
embeddings (comfyd's SD3 CLIP is checked against transformers in tests/engine/models/test_sd3_text.py): that covers
the timestep scale, the velocity's sign, CFG on a flow model, the latent shift/scale and the VAE.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import of_type, run_prompt
from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import saved
from tests.fixtures import sd3 as fixture

PROMPT, NEGATIVE = "a watercolor lighthouse at dawn", "blurry"
SEED, STEPS, CFG, SHIFT, SIZE = 5, 3, 4.5, 3.0, 64


@pytest.fixture
def files(settings):
    return fixture.install(settings.base_directory / "models")


def sd3_workflow(*, sampler="euler", scheduler="simple") -> dict:
    names = fixture.DEFAULT_NAMES
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": names["model"], "weight_dtype": "default"}},
        "2": {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": names["clip_l"], "clip_name2": names["clip_g"],
                                                           "clip_name3": names["t5"]}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": names["vae"]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": PROMPT}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": NEGATIVE}},
        "6": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": SHIFT}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        "12": {"class_type": "KSampler", "inputs": {
            "model": ["6", 0], "seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": sampler,
            "scheduler": scheduler, "denoise": 1.0, "positive": ["4", 0], "negative": ["5", 0],
            "latent_image": ["7", 0]}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["3", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": "sd3"}},
    }


def diffusers_reference(files) -> np.ndarray:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from engine.models.clip import TextEncoder
    from engine.models.load import load_clip_file, load_vae_file, open_checkpoint
    from engine.models.sd3 import LATENT_SCALE, LATENT_SHIFT, load_sd3
    from engine.models.t5 import load_t5_file

    cpu = torch.device("cpu")
    with open_checkpoint(files["model"], cpu) as file:
        _, transformer = load_sd3(file, cpu, torch.float32)
    vae = load_vae_file(files["vae"], cpu, torch.float32)
    vae.register_to_config(scaling_factor=LATENT_SCALE, shift_factor=LATENT_SHIFT)
    clip = TextEncoder({"l": load_clip_file(files["clip_l"], cpu, torch.float32).model,
                        "g": load_clip_file(files["clip_g"], cpu, torch.float32).model,
                        "t5xxl": load_t5_file(files["t5"], cpu, torch.float32).model}, "sd3")
    (cond, pooled), (uncond, uncond_pooled) = (clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
                                               for text in (PROMPT, NEGATIVE))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=vae, text_encoder=None,
        tokenizer=None, text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    # the simple schedule's 3 steps from the shift-3 table of 1000 times: t = 1, 0.667, 0.334
    sigmas = [SHIFT * t / (1 + (SHIFT - 1) * t) for t in (1.0, 0.667, 0.334)]
    noise = torch.randn([1, 16, SIZE // 8, SIZE // 8], generator=torch.manual_seed(SEED))
    return pipe(prompt_embeds=cond, pooled_prompt_embeds=pooled, negative_prompt_embeds=uncond,
                negative_pooled_prompt_embeds=uncond_pooled, guidance_scale=CFG, height=SIZE, width=SIZE,
                sigmas=sigmas, latents=noise, output_type="np").images[0]


async def test_sd3_matches_diffusers_pipeline(client, settings, files):
    prompt_id, messages = await run_prompt(client, sd3_workflow(), extra_data={"preview_method": "latent2rgb"})
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    assert len([m for m in messages if isinstance(m, bytes)]) == STEPS  # live previews in SD3's latent space
    entry = await run_ok(client, sd3_workflow())
    image = saved(settings, entry)[0].astype(np.float32) / 255
    reference = diffusers_reference(files)
    assert image.shape == reference.shape == (SIZE, SIZE, 3)
    assert image.std() > 0.02, "the image must not be flat for the comparison to mean anything"
    difference = np.abs(image - reference)
    assert difference.max() <= 2 / 255 and difference.mean() <= 0.5 / 255, (difference.max(), difference.mean())


async def test_samplers_and_the_sd3_prompt_node(client, settings, files):
    base = saved(settings, await run_ok(client, sd3_workflow()))[0].astype(int)
    other = sd3_workflow()
    other["4"] = {"class_type": "CLIPTextEncodeSD3", "inputs": {
        "clip": ["2", 0], "clip_l": PROMPT, "clip_g": PROMPT, "t5xxl": "a red barn in snow", "empty_padding": "none"}}
    changed = saved(settings, await run_ok(client, other))[0].astype(int)
    assert np.abs(base - changed).mean() > 0.5, "the T5 prompt must reach the model"
    for sampler, scheduler in (("dpmpp_2m", "sgm_uniform"), ("euler_ancestral", "beta")):
        image = saved(settings, await run_ok(client, sd3_workflow(sampler=sampler, scheduler=scheduler)))[0]
        assert image.shape == (SIZE, SIZE, 3) and image.std() > 0


async def test_all_in_one_checkpoint_equals_its_parts(client, settings, files):
    """CheckpointLoaderSimple on a file holding the same tensors as the four separate files, under the prefixes of
    the SD3.5 checkpoints that include their text encoders, gives the same image."""
    folder = settings.base_directory / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    fixture.bundle(files, folder / "sd3.5_medium_incl_clips.safetensors")
    combined = sd3_workflow()
    combined["1"] = {"class_type": "CheckpointLoaderSimple",
                     "inputs": {"ckpt_name": "sd3.5_medium_incl_clips.safetensors"}}
    for node in ("4", "5"):
        combined[node]["inputs"]["clip"] = ["1", 1]
    combined["13"]["inputs"]["vae"] = ["1", 2]
    del combined["2"], combined["3"]
    images = [saved(settings, await run_ok(client, prompt))[0] for prompt in (sd3_workflow(), combined)]
    assert images[0].std() > 0 and np.array_equal(images[0], images[1])
