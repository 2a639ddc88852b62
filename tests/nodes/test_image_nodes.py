"""Image nodes through the real app: load/save/preview/websocket output, names, metadata, confinement."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
from PIL import Image

from nodes import image as image_nodes
from tests.conftest import messages_until, next_message, of_type, run_finished, run_prompt, wait_history
from tests.nodes.test_latent_nodes import assert_matches_capture


def write_png(path, size=(8, 6), color=(255, 0, 0, 128)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, color).save(path)


def load_save(image="pic.png", prefix="out"):
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}}


async def test_load_invert_save_writes_png_with_metadata_and_counter(client, settings):
    write_png(settings.base_directory / "input" / "pic.png")
    workflow = {"nodes": [], "links": []}
    prompt_id, messages = await run_prompt(client, load_save(prefix="run/out"),
                                           extra_data={"extra_pnginfo": {"workflow": workflow}})
    executed = of_type(messages, "executed")[0]
    assert executed["output"] == {"images": [{"filename": "out_00001_.png", "subfolder": "run", "type": "output"}]}
    saved = Image.open(settings.base_directory / "output" / "run" / "out_00001_.png")
    assert saved.size == (8, 6)
    assert saved.getpixel((0, 0)) == (0, 255, 255)  # inverted red
    assert json.loads(saved.text["prompt"])["3"]["class_type"] == "SaveImage"
    assert json.loads(saved.text["workflow"]) == workflow

    # A different prompt (new prefix text) saves the next number.
    await run_prompt(client, load_save(prefix="run/out") | {"2": {"class_type": "ImageInvert",
                                                                   "inputs": {"image": ["1", 0]}},
                                                             "4": {"class_type": "ImageInvert",
                                                                   "inputs": {"image": ["2", 0]}}}
                     | {"3": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "run/out"}}})
    assert (settings.base_directory / "output" / "run" / "out_00002_.png").is_file()

    resp = await client.get("/view", params={"filename": "out_00001_.png", "subfolder": "run", "type": "output"})
    if resp.status != 501:  # the /view route may not exist yet in a partial checkout
        assert resp.status == 200
        assert Image.open(io.BytesIO(await resp.read())).size == (8, 6)


async def test_load_image_mask_from_alpha(client, settings):
    write_png(settings.base_directory / "input" / "pic.png", color=(10, 20, 30, 64))
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "pic.png"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    prompt_id, messages = await run_prompt(client, prompt)
    image = of_type(messages, "executed")[0]["output"]["images"][0]
    assert image["type"] == "temp" and image["filename"].startswith("ComfyUI_temp_")
    preview = Image.open(settings.base_directory / "temp" / image["filename"])
    assert preview.getpixel((0, 0)) == (10, 20, 30)


async def test_missing_or_escaping_image_names_fail_validation(client, settings):
    (settings.base_directory / "secret.png").parent.mkdir(parents=True, exist_ok=True)
    write_png(settings.base_directory / "secret.png")
    for name in ("nope.png", "../secret.png", str(settings.base_directory / "secret.png"), "a\x00b.png"):
        resp = await client.post("/prompt", json={"prompt": load_save(image=name)})
        body = await resp.json()
        assert resp.status == 400, name
        error = body["node_errors"]["1"]["errors"][0]
        assert error["type"] == "custom_validation_failed"
        assert "Invalid image file" in error["details"]


async def test_load_image_lists_input_files_in_object_info(client, settings):
    write_png(settings.base_directory / "input" / "b.png")
    write_png(settings.base_directory / "input" / "a.png")
    info = await (await client.get("/object_info/LoadImage")).json()
    assert info["LoadImage"]["input"]["required"]["image"] == [["a.png", "b.png"], {"image_upload": True}]


async def test_save_image_refuses_prefixes_outside_output(client, settings):
    write_png(settings.base_directory / "input" / "pic.png")
    _, messages = await run_prompt(client, load_save(prefix="../../escape"))
    error = of_type(messages, "execution_error")[0]
    assert error["node_type"] == "SaveImage" and "not allowed" in error["exception_message"]
    assert not list(settings.base_directory.parent.glob("escape*"))


async def test_save_image_websocket_sends_binary_png(client, settings):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 2,
                                                           "color": 0x00FF00}},
              "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
    prompt_id, messages = await run_prompt(client, prompt)
    frames = [m for m in messages if isinstance(m, bytes)]
    assert len(frames) == 2
    for frame in frames:
        assert struct.unpack(">II", frame[:8]) == (1, 2)
        image = Image.open(io.BytesIO(frame[8:]))
        assert image.size == (16, 8) and image.getpixel((3, 3)) == (0, 255, 0)
    assert of_type(messages, "executed") == []
    entry = await wait_history(client, prompt_id)
    assert entry["outputs"] == {}


async def test_pad_for_outpaint_and_scale(client, settings):
    write_png(settings.base_directory / "input" / "pic.png", size=(32, 32), color=(0, 0, 0, 255))
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "pic.png"}},
              "2": {"class_type": "ImagePadForOutpaint", "inputs": {"image": ["1", 0], "left": 8, "top": 0,
                                                                    "right": 0, "bottom": 0, "feathering": 4}},
              "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bilinear",
                                                           "width": 20, "height": 0, "crop": "disabled"}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "pad"}}}
    _, messages = await run_prompt(client, prompt)
    saved = Image.open(settings.base_directory / "output" / "pad_00001_.png")
    assert saved.size == (20, 16)
    array = np.array(saved)
    assert array[8, 0].tolist() == [127, 127, 127] and array[8, -1].tolist() == [0, 0, 0]


async def test_load_image_output_reads_an_annotated_output_file_and_validates_it(client, settings):
    write_png(settings.base_directory / "output" / "earlier.png", color=(0, 0, 255, 255))
    info = (await (await client.get("/object_info/LoadImageOutput")).json())["LoadImageOutput"]
    assert info["input"]["required"]["image"][1]["remote"]["route"] == "/internal/files/output"
    prompt = load_save(image="earlier.png [output]", prefix="again")
    prompt["1"]["class_type"] = "LoadImageOutput"
    prompt_id, messages = await run_prompt(client, prompt)
    assert not of_type(messages, "execution_error")
    assert Image.open(settings.base_directory / "output" / "again_00001_.png").getpixel((0, 0)) == (255, 255, 0)
    prompt["1"]["inputs"]["image"] = "missing.png [output]"
    resp = await client.post("/prompt", json={"prompt": prompt})
    assert resp.status == 400
    [error] = (await resp.json())["node_errors"]["1"]["errors"]
    assert error["type"] == "custom_validation_failed" and "missing.png" in error["details"]


def test_load_image_output_is_declared_as_upstream():
    assert_matches_capture(image_nodes, "LoadImageOutput")
