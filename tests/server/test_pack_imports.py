"""A custom node pack using what packs take from ComfyUI's `nodes`, `node_helpers`, `latent_preview`,
`comfy.cli_args`, `comfy.sample`, `comfy.sd`, `comfy.utils` and `comfy_extras` modules, the way published packs do:
subclassing built-in nodes, calling common_ksampler, loading models by path, replacing the previewer and the progress
hook at import; run over HTTP against the built-in nodes it imitates."""
from __future__ import annotations

import importlib
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import nodes
from engine import Settings
from nodes.compat import install, latent_preview
from nodes.compat.comfy import sample, utils
from nodes.compat.comfy_extras.nodes_custom_sampler import Noise_RandomNoise
from nodes.registry import NodeRegistry
from server.app import create_app
from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures.checkpoints import write_sd15
from tests.fixtures.templates import write_sd1_lora

PACK = '''
import comfy.sample
import comfy.sd
import comfy.utils
import folder_paths
import latent_preview
import node_helpers
import nodes
from comfy.cli_args import args
from comfy_extras.nodes_custom_sampler import SamplerCustomAdvanced
from comfy_extras.nodes_latent import LatentBatch
from nodes import CLIPTextEncode, KSampler, KSamplerAdvanced, SaveImage, common_ksampler
from PIL import Image

HOOK_CALLS = []
_report = comfy.utils.PROGRESS_BAR_HOOK


def counting_hook(value, total, preview, prompt_id=None, node_id=None):
    HOOK_CALLS.append((value, total))
    _report(value, total, preview, prompt_id=prompt_id, node_id=node_id)


comfy.utils.set_progress_bar_global_hook(counting_hook)


class SolidPreviewer(latent_preview.LatentPreviewer):
    """Every step shown as one flat colour, as packs with their own previews replace ComfyUI's."""
    def decode_latent_to_preview(self, x0):
        return Image.new("RGB", (8, 8), (255, 0, 0))


_get_previewer = latent_preview.get_previewer


def get_previewer(device, latent_format):
    return SolidPreviewer() if _get_previewer(device, latent_format) is not None else None


latent_preview.get_previewer = get_previewer


class PackKSampler(KSampler):
    CATEGORY = "pack"

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0):
        return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                               denoise=denoise)


class PackKSamplerAdvanced(KSamplerAdvanced):
    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, denoise=1.0):
        return common_ksampler(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                               latent_image, denoise=denoise, disable_noise=add_noise == "disable",
                               start_step=start_at_step, last_step=end_at_step,
                               force_full_denoise=return_with_leftover_noise == "disable")


class PackLatePrompt(CLIPTextEncode):
    """A prompt that only applies from `start` on."""
    @classmethod
    def INPUT_TYPES(cls):
        types = super().INPUT_TYPES()
        types["required"]["start"] = ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})
        return types

    def encode(self, clip, text, start):
        (conditioning,) = super().encode(clip, text)
        return (node_helpers.conditioning_set_values(conditioning, {"start_percent": start, "end_percent": 1.0}),)


class PackCheckpointWithLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),),
                             "lora_name": (folder_paths.get_filename_list("loras"),),
                             "strength": ("FLOAT", {"default": 1.0})}}
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "pack"

    def load(self, ckpt_name, lora_name, strength):
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            folder_paths.get_full_path("checkpoints", ckpt_name), output_vae=True, output_clip=True)
        lora = comfy.utils.load_torch_file(folder_paths.get_full_path("loras", lora_name), safe_load=True)
        model, clip = comfy.sd.load_lora_for_models(model, clip, lora, strength, strength)
        return model, clip, vae


class PackPreview(SaveImage):
    def __init__(self):
        self.output_dir = folder_paths.get_temp_directory()
        self.type = "temp"
        self.prefix_append = "_pack"
        self.compress_level = 1

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "method": (nodes.ImageScale.upscale_methods,)}}
    FUNCTION = "preview"

    def preview(self, images, method):
        return self.save_images(images)


class PackServerArgs:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "pack"

    def show(self):
        return {"ui": {"args": [args.listen, args.port, args.cpu, args.preview_method.value,
                                args.output_directory, nodes.NODE_CLASS_MAPPINGS["KSampler"] is KSampler,
                                LatentBatch is nodes.NODE_CLASS_MAPPINGS["LatentBatch"],
                                SamplerCustomAdvanced.__name__]}}


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (PackKSampler, PackKSamplerAdvanced, PackLatePrompt,
                                                     PackCheckpointWithLora, PackPreview, PackServerArgs)}
'''


@pytest.fixture
async def pack(aiohttp_client, tmp_path, monkeypatch):
    """(client, settings) of an app with the pack loaded; what the pack replaces at import is put back after."""
    monkeypatch.setattr(utils, "PROGRESS_BAR_HOOK", utils.PROGRESS_BAR_HOOK)
    monkeypatch.setattr(latent_preview, "get_previewer", latent_preview.get_previewer)
    (tmp_path / "custom_nodes" / "import_pack").mkdir(parents=True)
    (tmp_path / "custom_nodes" / "import_pack" / "__init__.py").write_text(PACK)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    write_sd15(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    (tmp_path / "models" / "loras").mkdir()
    write_sd1_lora(tmp_path / "models" / "loras" / "style.safetensors")
    settings = Settings(base_directory=tmp_path, cpu=True, port=8190, preview_method="latent2rgb")
    return await aiohttp_client(create_app(settings)), settings


def image_of(settings, entry, node="9") -> np.ndarray:
    return saved(settings, entry, node)[0].astype(int)


async def test_a_subclassed_ksampler_calling_common_ksampler_matches_the_built_in(pack):
    client, settings = pack
    prompt = default_workflow("tiny.safetensors", prefix="builtin")
    builtin = image_of(settings, await run_ok(client, prompt))
    prompt = default_workflow("tiny.safetensors", prefix="pack")
    prompt["3"]["class_type"] = "PackKSampler"
    prompt_id, messages = await run_prompt(client, prompt)
    assert not of_type(messages, "execution_error")
    assert np.array_equal(image_of(settings, await wait_history(client, prompt_id)), builtin)
    # progress went through the pack's hook, with the pack's previewer's frames
    assert [(p["value"], p["max"]) for p in of_type(messages, "progress") if p["node"] == "3"] == [(1, 3), (2, 3),
                                                                                                   (3, 3)]
    assert (1, 3) in sys.modules["custom_nodes.import_pack"].HOOK_CALLS
    frames = [Image.open(io.BytesIO(m[8:])).convert("RGB") for m in messages if isinstance(m, bytes)]
    assert len(frames) == 3 and all(frame.getpixel((4, 4))[0] > 200 > frame.getpixel((4, 4))[1]
                                    for frame in frames)


async def test_common_ksampler_steps_window_matches_ksampler_advanced(pack):
    client, settings = pack
    images = []
    for sampler in ("KSamplerAdvanced", "PackKSamplerAdvanced"):
        prompt = default_workflow("tiny.safetensors", prefix=sampler, steps=4)
        prompt["3"] = {"class_type": sampler, "inputs": {
            "model": ["4", 0], "add_noise": "enable", "noise_seed": 7, "steps": 4, "cfg": 6.0,
            "sampler_name": "euler_ancestral", "scheduler": "karras", "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0], "start_at_step": 1, "end_at_step": 3, "return_with_leftover_noise": "enable"}}
        images.append(image_of(settings, await run_ok(client, prompt)))
    assert np.array_equal(*images)


async def test_a_subclassed_prompt_node_with_conditioning_set_values_matches_the_built_in_nodes(pack):
    client, settings = pack
    prompt = default_workflow("tiny.safetensors", prefix="builtin")
    prompt["10"] = {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["6", 0],
                                                                            "start": 0.4, "end": 1.0}}
    prompt["3"]["inputs"]["positive"] = ["10", 0]
    builtin = image_of(settings, await run_ok(client, prompt))
    prompt = default_workflow("tiny.safetensors", prefix="pack")
    prompt["6"] = {"class_type": "PackLatePrompt", "inputs": {"text": "a photo of a cat", "clip": ["4", 1],
                                                             "start": 0.4}}
    assert np.array_equal(image_of(settings, await run_ok(client, prompt)), builtin)
    plain = image_of(settings, await run_ok(client, default_workflow("tiny.safetensors", prefix="plain")))
    assert not np.array_equal(plain, builtin)


async def test_a_checkpoint_and_lora_loaded_by_path_match_the_loader_nodes(pack):
    client, settings = pack
    prompt = default_workflow("tiny.safetensors", prefix="builtin")
    prompt["10"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1],
                                                          "lora_name": "style.safetensors",
                                                          "strength_model": 0.8, "strength_clip": 0.8}}
    for node, key in (("3", "model"), ("6", "clip"), ("7", "clip")):
        prompt[node]["inputs"][key] = ["10", 0 if key == "model" else 1]
    builtin = image_of(settings, await run_ok(client, prompt))
    prompt = default_workflow("tiny.safetensors", prefix="pack")
    prompt["4"] = {"class_type": "PackCheckpointWithLora", "inputs": {
        "ckpt_name": "tiny.safetensors", "lora_name": "style.safetensors", "strength": 0.8}}
    assert np.array_equal(image_of(settings, await run_ok(client, prompt)), builtin)
    plain = image_of(settings, await run_ok(client, default_workflow("tiny.safetensors", prefix="plain")))
    assert not np.array_equal(plain, builtin)


async def test_a_save_image_subclass_saves_where_its_attributes_say(pack):
    client, settings = pack
    info = await (await client.get("/object_info/PackPreview")).json()
    assert info["PackPreview"]["input"]["required"]["method"][0] == nodes.ImageScale.upscale_methods
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "PackPreview", "inputs": {"images": ["1", 0], "method": "area"}}}
    [image] = (await run_ok(client, prompt))["outputs"]["2"]["images"]
    assert image["type"] == "temp" and image["filename"].startswith("ComfyUI_pack_")
    assert (settings.base_directory / "temp" / image["filename"]).is_file()


async def test_cli_args_and_the_nodes_module_as_packs_read_them(pack):
    client, settings = pack
    entry = await run_ok(client, {"1": {"class_type": "PackServerArgs", "inputs": {}}})
    assert entry["outputs"]["1"]["args"] == ["127.0.0.1", 8190, True, "latent2rgb", None, True, True,
                                             "SamplerCustomAdvanced"]


def test_every_built_in_node_class_is_importable_from_its_comfyui_module():
    install()
    registry = NodeRegistry()
    registry.load_builtins()
    for name, cls in registry.classes.items():
        if registry.python_modules[name].startswith("custom_nodes."):
            continue  # SaveImageWebsocket: ComfyUI ships it as an example pack, not as a module packs import
        module = importlib.import_module(registry.python_modules[name])
        assert getattr(module, cls.__name__) is cls and getattr(module, name, cls) is cls, name


def test_sampling_helpers_agree_with_the_engine():
    latent = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [3, 1]}
    noise = Noise_RandomNoise(5).generate_noise(latent)
    assert torch.equal(noise, sample.prepare_noise(latent["samples"], 5, [3, 1]))
    mask = utils.reshape_mask(torch.ones(1, 16, 16), (3, 4, 8, 8))
    assert mask.shape == (3, 4, 8, 8) and torch.all(mask == 1)
    assert utils.repeat_to_batch_size(torch.arange(2), 5).tolist() == [0, 1, 0, 1, 0]
    image = torch.rand(1, 3, 40, 24)
    tiled = utils.tiled_scale(image, lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), tile_x=16,
                              tile_y=24, overlap=4, upscale_amount=2, out_channels=3)
    assert torch.allclose(tiled, image.repeat_interleave(2, -1).repeat_interleave(2, -2), atol=1e-6)


REBINDING_PACK = '''
import comfy.sample

CALLS = []
_sample = comfy.sample.sample


def sample(model, noise, steps, *args, **kwargs):
    CALLS.append((steps, kwargs.get("denoise")))
    return _sample(model, noise, steps, *args, **kwargs)


comfy.sample.sample = sample  # as sampling packs do at import: every KSampler must now come through here
NODE_CLASS_MAPPINGS = {}
'''


async def test_built_in_samplers_call_through_what_a_pack_rebinds(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "sample", sample.sample)
    (tmp_path / "custom_nodes" / "rebinding_pack").mkdir(parents=True)
    (tmp_path / "custom_nodes" / "rebinding_pack" / "__init__.py").write_text(REBINDING_PACK)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    write_sd15(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    client = await aiohttp_client(create_app(Settings(base_directory=tmp_path, cpu=True)))
    prompt = default_workflow("tiny.safetensors", steps=2)
    await run_ok(client, prompt)
    prompt["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["4", 0], "add_noise": "enable", "noise_seed": 7, "steps": 3, "cfg": 6.0, "sampler_name": "euler",
        "scheduler": "normal", "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
        "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
    await run_ok(client, prompt)
    assert sys.modules["custom_nodes.rebinding_pack"].CALLS == [(2, 1.0), (3, 1.0)]


NOISE_PACK = '''
import comfy.sample


class SeedNoise:
    """A NOISE value as packs make them: only ComfyUI's protocol (seed, generate_noise)."""
    def __init__(self, seed):
        self.seed = seed

    def generate_noise(self, input_latent):
        return comfy.sample.prepare_noise(input_latent["samples"], self.seed, input_latent.get("batch_index"))


class PackNoise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise_seed": ("INT", {"default": 0})}}
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = "pack"

    def get_noise(self, noise_seed):
        return (SeedNoise(noise_seed),)


NODE_CLASS_MAPPINGS = {"PackNoise": PackNoise}
'''


async def test_a_packs_noise_object_samples_like_random_noise(aiohttp_client, tmp_path):
    (tmp_path / "custom_nodes" / "noise_pack").mkdir(parents=True)
    (tmp_path / "custom_nodes" / "noise_pack" / "__init__.py").write_text(NOISE_PACK)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    write_sd15(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    settings = Settings(base_directory=tmp_path, cpu=True)
    client = await aiohttp_client(create_app(settings))
    images = []
    for noise in ("RandomNoise", "PackNoise"):
        prompt = default_workflow("tiny.safetensors", prefix=noise, steps=2)
        prompt.update({
            "20": {"class_type": noise, "inputs": {"noise_seed": 11}},
            "21": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
            "22": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 2,
                                                              "denoise": 1.0}},
            "23": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0],
                                                         "negative": ["7", 0], "cfg": 5.0}},
            "3": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["20", 0], "guider": ["23", 0],
                                                                    "sampler": ["21", 0], "sigmas": ["22", 0],
                                                                    "latent_image": ["5", 0]}}})
        images.append(image_of(settings, await run_ok(client, prompt)))
    assert np.array_equal(images[0], images[1]) and images[0].std() > 0
