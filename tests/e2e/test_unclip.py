"""SD2 unCLIP checkpoints through the real app: unCLIPCheckpointLoader and ImageOnlyCheckpointLoader on a tiny
unCLIP file, the image steering sampling through unCLIPConditioning, the errors for what they cannot load (an SVD
video checkpoint, a checkpoint without an image encoder), and parity with upstream ComfyUI.

The parity images in unclip_golden/ are upstream ComfyUI 0.3.64's (CPU, fp32) for parity_graph() on the
checkpoint tests.fixtures.unclip writes with ``parity=True`` and tests/golden/input_64.png, judged with the
tolerance of tests/e2e/test_parity.py.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import of_type, run_prompt
from tests.e2e.test_families import place, run_ok
from tests.e2e.test_txt2img import saved
from tests.fixtures.checkpoints import write_sd15
from tests.fixtures.unclip import write_svd, write_unclip

CHECKPOINT = "sd21-unclip-h.safetensors"
PARITY_CHECKPOINT = "parity-unclip-l.safetensors"
GOLDEN = Path(__file__).with_name("unclip_golden")
INPUT_IMAGE = Path(__file__).parents[1] / "golden" / "input_64.png"
MAX_DIFF, MAX_MEAN_DIFF = 2, 0.05  # as tests/e2e/test_parity.py


@pytest.fixture
def checkpoint(settings) -> str:
    name = place(settings, CHECKPOINT, write_unclip, v_pred=True)
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 96, dtype=np.uint8)
    Image.fromarray(np.dstack([np.tile(ramp, (64, 1)), np.tile(ramp[::-1], (64, 1)), np.full((64, 96), 90, np.uint8)])
                    ).save(settings.base_directory / "input" / "ramp.png")
    Image.fromarray(np.full((80, 48, 3), (200, 40, 90), np.uint8)).save(settings.base_directory / "input" / "red.png")
    return name


def unclip_graph(checkpoint: str, *, image: str = "ramp.png", strength: float = 1.0, noise_augmentation: float = 0.1,
                 loader: str = "unCLIPCheckpointLoader", prefix: str = "unclip") -> dict:
    """Image -> CLIP vision -> unCLIPConditioning on the text positive -> KSampler (64 px, 2 steps) -> SaveImage.

    With ImageOnlyCheckpointLoader the model, image encoder and VAE come from it and only the text encoder from
    CheckpointLoaderSimple on the same file."""
    if loader == "unCLIPCheckpointLoader":
        model, vision, vae, clip = ["1", 0], ["1", 3], ["1", 2], ["1", 1]
        loaders = {"1": {"class_type": loader, "inputs": {"ckpt_name": checkpoint}}}
    else:
        model, vision, vae, clip = ["1", 0], ["1", 1], ["1", 2], ["2", 1]
        loaders = {"1": {"class_type": loader, "inputs": {"ckpt_name": checkpoint}},
                   "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}}
    return {
        **loaders,
        "3": {"class_type": "LoadImage", "inputs": {"image": image}},
        "4": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": vision, "image": ["3", 0], "crop": "center"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": clip, "text": "a lighthouse at dusk"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": clip, "text": "blurry"}},
        "7": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["5", 0], "clip_vision_output": ["4", 0],
                                                             "strength": strength,
                                                             "noise_augmentation": noise_augmentation}},
        "8": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "9": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": 8675309, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "positive": ["7", 0], "negative": ["6", 0], "latent_image": ["8", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": vae}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": prefix}},
    }


async def render(client, settings, prompt) -> np.ndarray:
    return saved(settings, await run_ok(client, prompt), "11")[0]


async def test_loaders_are_described_as_comfyui_describes_them(client):
    info = await (await client.get("/object_info")).json()
    unclip, image_only = info["unCLIPCheckpointLoader"], info["ImageOnlyCheckpointLoader"]
    assert unclip["output"] == ["MODEL", "CLIP", "VAE", "CLIP_VISION"] and unclip["category"] == "loaders"
    assert image_only["output"] == ["MODEL", "CLIP_VISION", "VAE"]
    assert image_only["category"] == "loaders/video_models"
    assert image_only["display_name"] == "Image Only Checkpoint Loader (img2vid model)"
    assert list(unclip["input"]["required"]) == list(image_only["input"]["required"]) == ["ckpt_name"]


async def test_unclip_checkpoint_samples_steered_by_the_image(client, settings, checkpoint):
    steered = await render(client, settings, unclip_graph(checkpoint))
    assert steered.shape == (64, 64, 3) and steered.std() > 0
    # strength 0 leaves the text conditioning alone (the UNet then gets zeros), so only the image differs
    plain = await render(client, settings, unclip_graph(checkpoint, strength=0.0, prefix="plain"))
    other_image = await render(client, settings, unclip_graph(checkpoint, image="red.png", prefix="red"))
    noisier = await render(client, settings, unclip_graph(checkpoint, noise_augmentation=0.9, prefix="noisier"))
    for other in (plain, other_image, noisier):
        assert not np.array_equal(steered, other)
    again = await render(client, settings, unclip_graph(checkpoint, prefix="again"))
    assert np.array_equal(steered, again), "the augmentation noise follows the sampling seed"


async def test_image_only_loader_gives_the_same_model_encoder_and_vae(client, settings, checkpoint):
    by_unclip_loader = await render(client, settings, unclip_graph(checkpoint))
    by_image_only = await render(client, settings, unclip_graph(checkpoint, loader="ImageOnlyCheckpointLoader",
                                                                prefix="image-only"))
    assert np.array_equal(by_unclip_loader, by_image_only)


async def test_svd_checkpoint_fails_the_loader_naming_the_file_and_why(client, settings, checkpoint):
    svd = place(settings, "svd_xt.safetensors", write_svd)
    prompt = unclip_graph(checkpoint, loader="ImageOnlyCheckpointLoader")
    prompt["1"]["inputs"]["ckpt_name"] = svd
    _, messages = await run_prompt(client, prompt)
    (error,) = of_type(messages, "execution_error")
    assert error["node_id"] == "1" and error["node_type"] == "ImageOnlyCheckpointLoader"
    assert "svd_xt.safetensors" in error["exception_message"]
    assert "Stable Video Diffusion (video) model" in error["exception_message"]


async def test_checkpoint_without_an_image_encoder_gives_no_clip_vision(client, settings, checkpoint):
    plain = place(settings, "tiny-sd15.safetensors", write_sd15)
    prompt = unclip_graph(plain)
    _, messages = await run_prompt(client, prompt)
    (error,) = of_type(messages, "execution_error")
    assert error["node_id"] == "4" and "holds no image encoder" in error["exception_message"]


def parity_graph(case: str) -> dict:
    """"one": an image (centre crop) at strength 1, augmentation 0.1 on the text positive; "two": plus the inverted
    image (squashed) at strength 0.6, augmentation 0.3, so the sum is noised again at the merge level."""
    graph = {
        "1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": PARITY_CHECKPOINT}},
        "2": {"class_type": "LoadImage", "inputs": {"image": INPUT_IMAGE.name}},
        "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 3], "image": ["2", 0],
                                                           "crop": "center"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a lighthouse at dusk"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "6": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["4", 0], "clip_vision_output": ["3", 0],
                                                             "strength": 1.0, "noise_augmentation": 0.1}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 8675309, "steps": 3, "cfg": 5.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "positive": ["6", 0], "negative": ["5", 0],
            "latent_image": ["7", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": case}},
    }
    if case == "two":
        graph["11"] = {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}
        graph["12"] = {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 3], "image": ["11", 0],
                                                                    "crop": "none"}}
        graph["13"] = {"class_type": "unCLIPConditioning", "inputs": {
            "conditioning": ["6", 0], "clip_vision_output": ["12", 0], "strength": 0.6, "noise_augmentation": 0.3}}
        graph["8"]["inputs"]["positive"] = ["13", 0]
    if case == "text":
        graph["8"]["inputs"]["positive"] = ["4", 0]
    return graph


@pytest.fixture(scope="module")
def parity_checkpoint(tmp_path_factory):
    path = write_unclip(tmp_path_factory.mktemp("unclip-parity") / PARITY_CHECKPOINT, parity=True)
    yield path
    path.unlink()  # 1.5 GB


async def test_matches_upstream_comfyui(client, settings, parity_checkpoint):
    folder = settings.base_directory / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PARITY_CHECKPOINT).symlink_to(parity_checkpoint)
    (settings.base_directory / "input").mkdir(exist_ok=True)
    shutil.copy(INPUT_IMAGE, settings.base_directory / "input")
    images = {case: saved(settings, await run_ok(client, parity_graph(case)))[0].astype(int)
              for case in ("one", "two", "text")}
    for case in ("one", "two"):
        diff = np.abs(images[case] - np.array(Image.open(GOLDEN / f"{case}.png")).astype(int))
        assert diff.max() <= MAX_DIFF and diff.mean() <= MAX_MEAN_DIFF, (case, diff.max(), diff.mean())
        # the image embedding moves the picture far past that tolerance
        assert np.abs(images[case] - images["text"]).mean() > 50 * MAX_MEAN_DIFF
