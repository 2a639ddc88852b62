"""Text to image end to end on a tiny random-weight SD1.5 checkpoint through the real loader and the real app."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import of_type, run_prompt, wait_history
from tests.fixtures.checkpoints import write_sd15


@pytest.fixture
def checkpoint(settings):
    path = settings.base_directory / "models" / "checkpoints" / "tiny-sd15.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_sd15(path, seed=0)
    return path.name


def default_workflow(ckpt: str, *, seed=1234, steps=3, sampler="euler", scheduler="normal", batch=1, size=64,
                     prefix="tiny"):
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": sampler,
                                                   "scheduler": scheduler, "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


def saved(settings, entry, node="9"):
    return [np.array(Image.open(settings.base_directory / "output" / i["subfolder"] / i["filename"]))
            for i in entry["outputs"][node]["images"]]


async def test_default_workflow_generates_images_and_reports_progress(client, settings, checkpoint):
    prompt_id, messages = await run_prompt(client, default_workflow(checkpoint, batch=2))
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    assert [p["value"] for p in of_type(messages, "progress") if p["node"] == "3"] == [1, 2, 3]
    assert all(p["max"] == 3 for p in of_type(messages, "progress") if p["node"] == "3")
    entry = await wait_history(client, prompt_id)
    images = saved(settings, entry)
    assert len(images) == 2 and images[0].shape == (64, 64, 3)
    assert images[0].std() > 0  # not a blank image
    assert not np.array_equal(images[0], images[1])  # the batch has different noise per image


async def test_same_seed_same_image_and_other_seed_differs(client, settings, checkpoint):
    first = saved(settings, await wait_history(client, (await run_prompt(client, default_workflow(checkpoint, prefix="a")))[0]))
    again = saved(settings, await wait_history(client, (await run_prompt(client, default_workflow(checkpoint, prefix="b")))[0]))
    other = saved(settings, await wait_history(client, (await run_prompt(
        client, default_workflow(checkpoint, seed=99, prefix="c")))[0]))
    assert np.array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])


async def test_checkpoint_listed_and_bad_names_rejected(client, checkpoint):
    info = await (await client.get("/object_info/CheckpointLoaderSimple")).json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [checkpoint]
    resp = await client.post("/prompt", json={"prompt": default_workflow("../../etc/passwd")})
    assert resp.status == 400
    body = await resp.json()
    assert body["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"


async def test_corrupt_checkpoint_fails_the_prompt_with_a_clear_error(client, settings, checkpoint):
    bad = settings.base_directory / "models" / "checkpoints" / "broken.safetensors"
    bad.write_bytes(b"this is not a checkpoint")
    prompt_id, messages = await run_prompt(client, default_workflow("broken.safetensors"))
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "4" and "broken.safetensors" in error["exception_message"]
    assert "not a recognised Stable Diffusion checkpoint" in error["exception_message"]
