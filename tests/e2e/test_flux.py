"""FLUX.1 dev and schnell end to end on tiny random-weight files in the layouts their official workflows load:
UNETLoader, DualCLIPLoader (type flux: CLIP-L + T5-XXL), VAELoader (the FLUX VAE), FluxGuidance, ModelSamplingFlux,
EmptySD3LatentImage, and both the custom-sampling nodes and KSampler.

Images are checked against diffusers' own FluxPipeline on the same weights, noise and sigmas, with the prompt
embedded as diffusers embeds it (T5 ids padded to 256 with no attention mask, CLIP-L's pooled output): that covers
the patch packing and position ids, the time and guidance inputs, the velocity's sign, the latent shift/scale and
the VAE, none of which a random-weight picture can show.
"""
from __future__ import annotations

import io
import math
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import of_type, run_prompt
from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import saved
from tests.fixtures import flux as fixture

PROMPT = "a red fox reading a newspaper on a park bench, (autumn leaves:1.0)"
SEED, STEPS, GUIDANCE, SIZE = 11, 3, 4.0, 64
T5_LENGTH = 256  # ComfyUI pads Flux's T5 tokens to at least this


@pytest.fixture
def files(settings):
    return fixture.install(settings.base_directory / "models")


def loaders(unet: str = "dev") -> dict:
    names = fixture.DEFAULT_NAMES
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": names[unet], "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": names["clip_l"], "clip_name2": names["t5"],
                                                         "type": "flux"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": names["vae"]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": PROMPT}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["3", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": "flux"}},
    }


def dev_workflow(*, guidance=GUIDANCE, sampler="euler") -> dict:
    """FLUX.1 dev as its full example workflow wires it: guidance on the conditioning, size-dependent shift, the
    custom-sampling nodes with a BasicGuider (no negative prompt)."""
    return {**loaders("dev"),
            "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": guidance}},
            "6": {"class_type": "ModelSamplingFlux", "inputs": {"model": ["1", 0], "max_shift": 1.15,
                                                                "base_shift": 0.5, "width": SIZE, "height": SIZE}},
            "8": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
            "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
            "11": {"class_type": "BasicScheduler", "inputs": {"model": ["6", 0], "scheduler": "simple",
                                                              "steps": STEPS, "denoise": 1.0}},
            "14": {"class_type": "BasicGuider", "inputs": {"model": ["6", 0], "conditioning": ["5", 0]}},
            "12": {"class_type": "SamplerCustomAdvanced", "inputs": {
                "noise": ["8", 0], "guider": ["14", 0], "sampler": ["10", 0], "sigmas": ["11", 0],
                "latent_image": ["7", 0]}}}


def schnell_workflow() -> dict:
    """FLUX.1 schnell as its template wires it: KSampler at cfg 1 with a zeroed-out negative."""
    return {**loaders("schnell"),
            "5": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["4", 0]}},
            "12": {"class_type": "KSampler", "inputs": {
                "model": ["1", 0], "seed": SEED, "steps": STEPS, "cfg": 1.0, "sampler_name": "euler",
                "scheduler": "simple", "denoise": 1.0, "positive": ["4", 0], "negative": ["5", 0],
                "latent_image": ["7", 0]}}}


def reference_embeddings(files) -> tuple[torch.Tensor, torch.Tensor]:
    """(T5 sequence, CLIP-L pooled output) as diffusers' FluxPipeline.encode_prompt makes them: whole-prompt
    tokenization, T5 padded to the length with no attention mask, CLIP-L's pooler output over 77 tokens."""
    from engine.models.load import load_clip_file
    from engine.models.t5 import load_t5_file
    from engine.text.clip_tokenizer import END_ID, START_ID, clip_tokenizer
    from engine.text.t5_tokenizer import t5_tokenizer

    text = PROMPT.replace("(autumn leaves:1.0)", "autumn leaves")  # weight 1.0: the same conditioning
    t5_ids = t5_tokenizer().tokenizer.encode(text).ids  # with the closing </s>
    t5_ids += [0] * (T5_LENGTH - len(t5_ids))
    clip_ids = [START_ID] + clip_tokenizer().encode(text) + [END_ID]
    clip_ids += [END_ID] * (77 - len(clip_ids))
    t5 = load_t5_file(files["t5"], "cpu", torch.float32).model
    clip = load_clip_file(files["clip_l"], "cpu", torch.float32).model
    with torch.no_grad():
        sequence = t5(torch.tensor([t5_ids])).last_hidden_state
        pooled = clip(torch.tensor([clip_ids])).pooler_output
    return sequence, pooled


def diffusers_reference(files, transformer_file, sigmas: list[float], guidance: float, pipeline="FluxPipeline",
                        **inputs) -> np.ndarray:
    """``pipeline`` (a diffusers FLUX pipeline class name) on ``transformer_file`` and the fixture's VAE, with the
    prompt embedded as diffusers does, from the KSampler's noise down ``sigmas``; ``inputs``: the variant's own."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from engine.models.flux import LATENT_SCALE, LATENT_SHIFT, load_flux, pack
    from engine.models.load import load_vae_file, open_checkpoint

    cpu = torch.device("cpu")
    with open_checkpoint(transformer_file, cpu) as file:
        _, transformer = load_flux(file, cpu, torch.float32)
    vae = load_vae_file(files["vae"], cpu, torch.float32)
    vae.register_to_config(scaling_factor=LATENT_SCALE, shift_factor=LATENT_SHIFT)
    # shift 1 and no dynamic shifting: the given sigmas (already shifted as comfyd's schedule has them) are used.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe = getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None,
                                        text_encoder_2=None, tokenizer_2=None, transformer=transformer)
    sequence, pooled = reference_embeddings(files)
    noise = torch.randn([1, 16, SIZE // 8, SIZE // 8], generator=torch.manual_seed(SEED))
    # The variant pipelines draw a sample from the VAE's latent distribution where ComfyUI takes its mean.
    with mock.patch.object(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode()):
        return pipe(prompt_embeds=sequence, pooled_prompt_embeds=pooled, height=SIZE, width=SIZE, sigmas=sigmas,
                    guidance_scale=guidance, latents=pack(noise), output_type="np", **inputs).images[0]


def exponential_shift(mu: float, t: float) -> float:
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


def simple_schedule(mu: float = 1.15) -> list[float]:
    """The "simple" scheduler's 3 sigmas on FluxModelSampling(mu): every steps-th entry from the top of the table
    of 10000 shifted times."""
    return [exponential_shift(mu, t) for t in (1.0, 1 - 3333 / 10000, 1 - 6666 / 10000)]


def assert_close_to(image: np.ndarray, reference: np.ndarray) -> None:
    assert image.shape == reference.shape == (SIZE, SIZE, 3)
    assert image.std() > 0.02, "the image must not be flat for the comparison to mean anything"
    difference = np.abs(image - reference)
    assert difference.max() <= 2 / 255 and difference.mean() <= 0.5 / 255, (difference.max(), difference.mean())


async def test_flux_dev_matches_diffusers_pipeline(client, settings, files):
    prompt_id, messages = await run_prompt(client, dev_workflow(), extra_data={"preview_method": "latent2rgb"})
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    assert [p["value"] for p in of_type(messages, "progress") if p["node"] == "12"] == [1, 2, 3]
    previews = [Image.open(io.BytesIO(m[8:])) for m in messages if isinstance(m, bytes)]
    assert len(previews) == 3 and previews[0].size == (SIZE // 8, SIZE // 8)  # 16 latent channels to RGB
    entry = await run_ok(client, dev_workflow())  # the same again, from the cache
    image = saved(settings, entry)[0].astype(np.float32) / 255
    # ModelSamplingFlux at 64x64 (16 tokens): mu = 0.5 + (1.15 - 0.5) / 3840 * (16 - 256); the simple schedule
    # takes every steps-th entry from the top of the 10000-entry table of shifted times.
    sigmas = simple_schedule(0.5 + 0.65 / 3840 * (16 - 256))
    assert_close_to(image, diffusers_reference(files, files["dev"], sigmas, GUIDANCE))


async def test_flux_schnell_matches_diffusers_pipeline(client, settings, files):
    entry = await run_ok(client, schnell_workflow())
    image = saved(settings, entry)[0].astype(np.float32) / 255
    # schnell: plain rectified flow, no shift, no guidance input
    assert_close_to(image, diffusers_reference(files, files["schnell"], [1.0, 0.667, 0.334], guidance=0.0))


async def test_guidance_and_prompt_reach_the_model(client, settings, files):
    base = saved(settings, await run_ok(client, dev_workflow()))[0].astype(int)
    stronger = saved(settings, await run_ok(client, dev_workflow(guidance=1.0)))[0].astype(int)
    assert np.abs(base - stronger).mean() > 0.5, "FluxGuidance must reach the guidance embedder"
    other = dev_workflow()
    other["4"] = {"class_type": "CLIPTextEncodeFlux", "inputs": {"clip": ["2", 0], "clip_l": PROMPT,
                                                                 "t5xxl": "a lighthouse on a cliff", "guidance": 3.5}}
    changed = saved(settings, await run_ok(client, other))[0].astype(int)
    assert np.abs(base - changed).mean() > 0.5, "the T5 prompt must reach the model"
    for sampler in ("dpmpp_2m", "euler_ancestral"):
        image = saved(settings, await run_ok(client, dev_workflow(sampler=sampler)))[0]
        assert image.shape == (SIZE, SIZE, 3) and image.std() > 0


async def test_sdxl_conditioning_on_flux_is_a_clear_error(client, settings, files):
    from tests.fixtures.checkpoints import write_sdxl

    write_sdxl(settings.base_directory / "models" / "checkpoints" / "xl.safetensors")  # 80-wide conditioning
    prompt = schnell_workflow()
    prompt["20"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "xl.safetensors"}}
    prompt["4"]["inputs"]["clip"] = ["20", 1]
    _, messages = await run_prompt(client, prompt)
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "12" and "DualCLIPLoader type flux" in error["exception_message"]
    assert (await run_ok(client, schnell_workflow()))["status"]["status_str"] == "success"  # still serving


async def test_all_in_one_checkpoint_equals_its_parts(client, settings):
    """CheckpointLoaderSimple on an fp8 all-in-one file gives the image that the three separate loaders give on
    the same tensors split into their own files (prefixes stripped)."""
    from safetensors.torch import load_file, save_file

    models = settings.base_directory / "models"
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    checkpoint = fixture.write_flux_checkpoint(models / "checkpoints" / "flux1-dev-fp8.safetensors", seed=3)
    tensors = load_file(str(checkpoint))
    parts = {("diffusion_models", "split-dev.safetensors"): "model.diffusion_model.",
             ("text_encoders", "split-clip.safetensors"): "text_encoders.clip_l.transformer.",
             ("text_encoders", "split-t5.safetensors"): "text_encoders.t5xxl.transformer.",
             ("vae", "split-vae.safetensors"): "vae."}
    for (folder, name), prefix in parts.items():
        (models / folder).mkdir(exist_ok=True)
        save_file({k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)},
                  str(models / folder / name))
    separate = schnell_workflow()
    separate["1"]["inputs"]["unet_name"] = "split-dev.safetensors"
    separate["2"]["inputs"].update(clip_name1="split-t5.safetensors", clip_name2="split-clip.safetensors")
    separate["3"]["inputs"]["vae_name"] = "split-vae.safetensors"
    combined = schnell_workflow()
    combined["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-dev-fp8.safetensors"}}
    combined["4"]["inputs"]["clip"] = ["1", 1]
    combined["13"]["inputs"]["vae"] = ["1", 2]
    for unused in ("2", "3"):
        del combined[unused]
    images = [saved(settings, await run_ok(client, prompt))[0] for prompt in (separate, combined)]
    assert images[0].std() > 0 and np.array_equal(images[0], images[1])


async def test_fp8_storage_gives_the_image_of_its_values_and_takes_loras(client, settings, files):
    """An fp8 file's linear weights stay fp8 and each layer computes from them: the image equals that of the same
    values widened to fp32 on disk. A LoRA on the fp8 model applies, and the weights come back exactly after."""
    from safetensors.torch import load_file, save_file

    folder = settings.base_directory / "models" / "diffusion_models"
    fp8 = fixture.write_flux(folder / "flux1-dev-fp8-only.safetensors", seed=9, dtype=torch.float8_e4m3fn)
    save_file({k: v.float() for k, v in load_file(str(fp8)).items()}, str(folder / "flux1-dev-wide.safetensors"))
    (settings.base_directory / "models" / "loras").mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(1)
    save_file({"diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": torch.randn(384, 4, generator=g),
               "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": torch.randn(4, 128, generator=g) * 0.1,
               "diffusion_model.single_blocks.1.linear1.lora_B.weight": torch.randn(896, 4, generator=g),
               "diffusion_model.single_blocks.1.linear1.lora_A.weight": torch.randn(4, 128, generator=g) * 0.1},
              str(settings.base_directory / "models" / "loras" / "flux-lora.safetensors"))

    def on(unet: str, lora_strength: float | None = None) -> dict:
        prompt = dev_workflow()
        prompt["1"]["inputs"]["unet_name"] = unet
        if lora_strength is not None:
            prompt["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
                "model": ["1", 0], "lora_name": "flux-lora.safetensors", "strength_model": lora_strength}}
            prompt["6"]["inputs"]["model"] = ["20", 0]
        return prompt

    narrow = saved(settings, await run_ok(client, on("flux1-dev-fp8-only.safetensors")))[0]
    wide = saved(settings, await run_ok(client, on("flux1-dev-wide.safetensors")))[0]
    # The same values through different kernels (a cast per layer against plain fp32 weights): on another CPU's
    # vector width the float rounding may differ, so within the parity tolerance rather than bit for bit.
    difference = np.abs(narrow.astype(int) - wide.astype(int))
    assert narrow.std() > 0 and difference.max() <= 2 and difference.mean() <= 0.05, difference.max()
    with_lora = saved(settings, await run_ok(client, on("flux1-dev-fp8-only.safetensors", 0.5)))[0]
    assert np.abs(with_lora.astype(int) - narrow.astype(int)).mean() > 0.5
    # strength 0 asks for the bare weights: sampled afresh (another prompt), they must be the original fp8 values
    restored = saved(settings, await run_ok(client, on("flux1-dev-fp8-only.safetensors", 0.0)))[0]
    assert np.array_equal(restored, narrow)  # the same fp8 values through the same kernels: bit for bit


async def test_a_controlnet_for_sd_unets_is_a_clear_error(client, settings, files):
    from tests.fixtures.controlnets import write_controlnet
    from tests.fixtures.templates import write_input_image

    (settings.base_directory / "models" / "controlnet").mkdir(parents=True, exist_ok=True)
    write_controlnet(settings.base_directory / "models" / "controlnet" / "sd15_canny.safetensors", "sd1")
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    write_input_image(settings.base_directory / "input" / "edges.png")
    prompt = schnell_workflow()
    prompt["20"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "sd15_canny.safetensors"}}
    prompt["21"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png"}}
    prompt["22"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["4", 0], "negative": ["5", 0], "control_net": ["20", 0], "image": ["21", 0], "strength": 1.0,
        "start_percent": 0.0, "end_percent": 1.0}}
    prompt["12"]["inputs"].update(positive=["22", 0], negative=["22", 1])
    _, messages = await run_prompt(client, prompt)
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "12" and "do not apply to FLUX" in error["exception_message"]
    assert (await run_ok(client, schnell_workflow()))["status"]["status_str"] == "success"  # still serving
