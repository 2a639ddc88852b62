"""Model upscaling end to end: LoadImage -> UpscaleModelLoader -> ImageUpscaleWithModel -> SaveImage through the
real app, with tiny ESRGAN and RealESRGAN Compact files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_txt2img import saved
from tests.fixtures.upscalers import compact_state_dict, write_esrgan


@pytest.fixture
def files(settings):
    models = settings.base_directory / "models" / "upscale_models"
    models.mkdir(parents=True, exist_ok=True)
    write_esrgan(models / "tiny-esrgan-x4.pth", 4)
    sd = compact_state_dict(scale=2)  # last conv silenced: the network is exactly nearest upscaling
    last = max(k for k in sd if k.endswith(".bias"))
    sd[last].zero_()
    sd[last.replace(".bias", ".weight")].zero_()
    save_file(sd, str(models / "nearest-x2.safetensors"))
    inputs = settings.base_directory / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(inputs / "small.png")
    return pixels


def workflow(model_name: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "up"}},
    }


async def upscaled(client, settings, model_name: str) -> tuple[np.ndarray, list]:
    prompt_id, messages = await run_prompt(client, workflow(model_name))
    errors = of_type(messages, "execution_error")
    assert not errors, errors[0]["exception_message"] + "".join(errors[0]["traceback"])
    return saved(settings, await wait_history(client, prompt_id))[0], messages


async def test_esrgan_upscales_four_times_and_reports_progress(client, settings, files):
    image, messages = await upscaled(client, settings, "tiny-esrgan-x4.pth")
    assert image.shape == (96, 160, 3) and image.std() > 1
    assert [(p["value"], p["max"]) for p in of_type(messages, "progress") if p["node"] == "3"] == [(1, 1)]


async def test_nearest_compact_reproduces_nearest_upscaling(client, settings, files):
    image, _ = await upscaled(client, settings, "nearest-x2.safetensors")
    expected = F.interpolate(torch.from_numpy(files).movedim(-1, 0)[None].float(), scale_factor=2, mode="nearest")
    assert np.array_equal(image, expected[0].movedim(0, -1).numpy().astype(np.uint8))


async def test_loader_lists_the_files_and_a_bad_file_fails_the_node(client, settings, files):
    info = await (await client.get("/object_info/UpscaleModelLoader")).json()
    options = info["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"]
    assert options == ["nearest-x2.safetensors", "tiny-esrgan-x4.pth"]
    (settings.base_directory / "models" / "upscale_models" / "broken.pth").write_bytes(b"garbage")
    _, messages = await run_prompt(client, workflow("broken.pth"))
    errors = of_type(messages, "execution_error")
    assert errors and errors[0]["node_id"] == "2" and "broken.pth" in errors[0]["exception_message"]
