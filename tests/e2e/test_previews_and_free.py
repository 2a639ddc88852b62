"""Sampling previews on the websocket, and /free releasing loaded models."""
from __future__ import annotations

import asyncio
import io
import logging
import struct

import pytest
from PIL import Image

from engine import Settings
from server.keys import ENGINE
from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_txt2img import checkpoint, default_workflow  # noqa: F401 (fixture)


@pytest.fixture
def settings(tmp_path):
    return Settings(base_directory=tmp_path, cpu=True, preview_method="latent2rgb")


async def test_latent_previews_are_sent_each_step(client, checkpoint):
    _, messages = await run_prompt(client, default_workflow(checkpoint, steps=3))
    frames = [m for m in messages if isinstance(m, bytes)]
    assert len(frames) == 3
    for frame in frames:
        event, image_format = struct.unpack(">II", frame[:8])
        assert (event, image_format) == (1, 1)  # preview image, JPEG
        preview = Image.open(io.BytesIO(frame[8:]))
        assert preview.format == "JPEG" and preview.size == (8, 8)  # one RGB pixel per latent pixel
    progress = [m for m in messages if isinstance(m, dict) and m["type"] == "progress"]
    assert len(progress) == 3


async def test_free_unloads_models_and_the_next_prompt_reloads(client, checkpoint):
    prompt_id, _ = await run_prompt(client, default_workflow(checkpoint, prefix="a"))
    manager = client.app[ENGINE].model_manager()
    assert [p.endswith("tiny-sd15.safetensors") for p in manager.loaded_files()] == [True]
    assert (await client.post("/free", json={"unload_models": True})).status == 200
    for _ in range(1200):  # up to a minute: the worker unloads between prompts
        if not manager.loaded_files():
            break
        await asyncio.sleep(0.05)
    assert manager.loaded_files() == []
    prompt_id, messages = await run_prompt(client, default_workflow(checkpoint, prefix="b"))
    assert of_type(messages, "execution_cached")[0]["nodes"] == []  # outputs were dropped too
    assert (await wait_history(client, prompt_id))["status"]["status_str"] == "success"


@pytest.mark.parametrize("server_method, prompt_method, frames", [
    ("none", "auto", 3), ("none", "taesd", 3), ("latent2rgb", "none", 0), ("none", None, 0), ("none", "bogus", 0)])
async def test_the_client_chooses_the_preview_method_per_prompt(client, checkpoint, server_method, prompt_method,
                                                                 frames):
    """The frontend's "Live preview method" setting arrives as extra_data.preview_method and overrides the
    server's --preview-method for that prompt ("default" is not sent; unknown values are ignored)."""
    client.app[ENGINE].executor.preview_method = server_method
    extra = {"extra_data": {"preview_method": prompt_method}} if prompt_method else {}
    _, messages = await run_prompt(client, default_workflow(checkpoint, steps=3), **extra)
    assert len([m for m in messages if isinstance(m, bytes)]) == frames


def preview_sizes(messages) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(m[8:])).size for m in messages if isinstance(m, bytes)]


@pytest.mark.parametrize("method, with_decoder, size", [
    ("taesd", True, (64, 64)), ("auto", True, (64, 64)), ("latent2rgb", True, (8, 8)), ("taesd", False, (8, 8))])
async def test_taesd_previews_from_vae_approx(client, settings, checkpoint, method, with_decoder, size):
    """With models/vae_approx/taesd_decoder.* the taesd (and auto) previews are the decoded image at full size;
    without it they fall back to latent2rgb's one pixel per latent pixel, as ComfyUI does."""
    from tests.fixtures.taesd import write_decoder

    if with_decoder:
        write_decoder(settings.base_directory / "models" / "vae_approx" / "taesd_decoder.safetensors")
    client.app[ENGINE].executor.preview_method = method
    _, messages = await run_prompt(client, default_workflow(checkpoint, steps=2))
    assert preview_sizes(messages) == [size, size]


async def test_vae_loader_offers_taesd_when_both_halves_exist(client, settings):
    """VAELoader lists "taesd" once models/vae_approx has its encoder and decoder; VAEEncode then VAEDecode with it
    is the original TAESD networks' round trip, raw latents scaled by SD's 0.18215 in between."""
    import numpy as np
    import torch

    from tests.fixtures.taesd import (decoder_state_dict, encoder_state_dict, reference_decode, reference_encode,
                                      write_decoder, write_encoder)

    approx = settings.base_directory / "models" / "vae_approx"
    write_decoder(approx / "taesd_decoder.safetensors", seed=1)
    choices = (await (await client.get("/object_info/VAELoader")).json())["VAELoader"]["input"]["required"]
    assert "taesd" not in choices["vae_name"][0]
    write_encoder(approx / "taesd_encoder.safetensors", seed=2)
    choices = (await (await client.get("/object_info/VAELoader")).json())["VAELoader"]["input"]["required"]
    assert "taesd" in choices["vae_name"][0]

    yy, xx = np.mgrid[0:64, 0:64]
    pixels = np.stack([xx * 4, yy * 4, (xx * yy) % 256], -1).astype(np.uint8)
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(settings.base_directory / "input" / "pattern.png")
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "pattern.png"}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 0]}},
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "taesd"}},
    }
    prompt_id, messages = await run_prompt(client, prompt)
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    entry = await wait_history(client, prompt_id)
    image = entry["outputs"]["5"]["images"][0]
    saved = np.asarray(Image.open(settings.base_directory / "output" / image["filename"]), dtype=np.float32) / 255

    source = torch.from_numpy(pixels).float().div(255).movedim(-1, 0)[None]
    expected = reference_decode(decoder_state_dict(seed=1), reference_encode(encoder_state_dict(seed=2), source))
    expected = expected.clamp(0, 1)[0].movedim(0, -1).numpy()
    assert saved.shape == (64, 64, 3) and saved.std() > 0.01
    assert np.abs(saved - expected).max() <= 1.5 / 255


async def test_pixel_space_vae_passes_the_image_through(client, settings):
    """VAELoader's "pixel_space" (always listed, as upstream): VAEEncode makes the image itself the latent (3
    channels, full size, -1..1) and VAEDecode gives it back."""
    import numpy as np

    choices = (await (await client.get("/object_info/VAELoader")).json())["VAELoader"]["input"]["required"]
    assert choices["vae_name"][0][-1] == "pixel_space"
    pixels = (np.arange(48 * 40 * 3).reshape(48, 40, 3) % 253).astype(np.uint8)
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(settings.base_directory / "input" / "pixels.png")
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "pixels.png"}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 0]}},
        "4": {"class_type": "LatentFlip", "inputs": {"samples": ["3", 0], "flip_method": "x-axis: vertically"}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "pixels"}},
    }
    prompt_id, messages = await run_prompt(client, prompt)
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    image = (await wait_history(client, prompt_id))["outputs"]["6"]["images"][0]
    saved = np.asarray(Image.open(settings.base_directory / "output" / image["filename"])).astype(int)
    assert np.abs(saved - pixels[::-1].astype(int)).max() <= 1


async def test_a_failing_preview_does_not_fail_the_prompt(client, checkpoint, monkeypatch, caplog):
    from engine.sampling import preview

    def broken(x0, family):
        raise RuntimeError("no factors for this latent space")

    monkeypatch.setattr(preview, "latent_to_image", broken)
    with caplog.at_level(logging.WARNING, logger="comfyd.sampling"):
        prompt_id, messages = await run_prompt(client, default_workflow(checkpoint, steps=3))
    assert not [m for m in messages if isinstance(m, bytes)]
    assert len([m for m in messages if isinstance(m, dict) and m["type"] == "progress"]) == 3
    assert any(m["type"] == "execution_success" for m in messages if isinstance(m, dict))
    assert sum("live preview failed" in r.message for r in caplog.records) == 1
