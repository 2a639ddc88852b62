"""The programmatic API under /api/v1: blocking and asynchronous runs, answers as JSON or image bytes, digests,
uploads in the same request, and its refusals."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json

import pytest
from aiohttp import FormData
from PIL import Image

from engine import Settings
from server.app import create_app
from tests.conftest import wait_history
from tests.test_openapi import conforms, spec  # noqa: F401  (spec is a fixture)


def image_prompt(color: int = 0xFF0000, width: int = 8, height: int = 6, prefix: str = "v1") -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1,
                                                     "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def value_prompt(value: int = 3) -> dict:
    return {"1": {"class_type": "TestConstant", "inputs": {"value": value}},
            "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}


def slow_prompt(value: int, steps: int = 2000) -> dict:
    return {"1": {"class_type": "TestSlow", "inputs": {"value": value, "steps": steps, "delay": 0.01}},
            "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}


def failing_prompt(message: str = "boom") -> dict:
    return {"1": {"class_type": "TestFail", "inputs": {"value": 1, "message": message}},
            "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}


def digest(prompt: dict) -> str:
    return hashlib.sha256(json.dumps(prompt, separators=(",", ":")).encode()).hexdigest()


def png_bytes(size=(5, 4), color=(20, 40, 220)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def wait_running(client, prompt_id: str, timeout: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        queue = await (await client.get("/queue")).json()
        if [item[1] for item in queue["queue_running"]] == [prompt_id]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{prompt_id} did not start")


async def queue_slow(client, value: int) -> str:
    resp = await client.post("/prompt", json={"prompt": slow_prompt(value)})
    assert resp.status == 200
    return (await resp.json())["prompt_id"]


# -- blocking runs --------------------------------------------------------------------------------------------------

async def test_blocking_json_answers_urls_outputs_and_prompt_id(client, spec):
    prompt = image_prompt()
    body = await conforms(spec, client, "POST", "/api/v1/prompts", 200, json=prompt)
    assert set(body) == {"urls", "outputs", "prompt_id"}
    (image,) = body["outputs"]["2"]["images"]
    assert image == {"filename": image["filename"], "subfolder": "", "type": "output"}
    assert image["filename"].startswith("v1_") and image["filename"].endswith(".png")
    assert body["urls"] == [f"{client.make_url('/view')}?filename={image['filename']}&type=output"]
    view = await client.session.get(body["urls"][0])
    assert Image.open(io.BytesIO(await view.read())).size == (8, 6)
    history = await wait_history(client, body["prompt_id"])
    assert history["outputs"] == body["outputs"]


async def test_blocking_json_headers_carry_the_digest_and_the_image_location(client):
    prompt = image_prompt(color=0x00FF00)
    resp = await client.post("/api/v1/prompts", json=prompt, headers={"Accept": "application/json"})
    assert resp.status == 200
    assert resp.headers["Digest"] == f"SHA256={digest(prompt)}"
    assert resp.headers["Location"] == f"/api/v1/images/{digest(prompt)}"


async def test_blocking_png_answers_the_first_image(client, spec):
    prompt = image_prompt(color=0xFF0000, prefix="red")
    resp = await client.post("/api/v1/prompts", json=prompt, headers={"Accept": "image/png"})
    assert resp.status == 200 and resp.content_type == "image/png"
    image = Image.open(io.BytesIO(await resp.read()))
    assert image.format == "PNG" and image.size == (8, 6) and image.convert("RGB").getpixel((3, 3)) == (255, 0, 0)
    assert resp.headers["Digest"] == f"SHA256={digest(prompt)}"
    assert resp.headers["Location"] == f"/api/v1/images/{digest(prompt)}"
    assert resp.headers["Content-Disposition"] == 'filename="red_00001_.png"'
    await conforms(spec, client, "POST", "/api/v1/prompts", 200, json=image_prompt(color=1),
                   headers={"Accept": "image/png"})


@pytest.mark.parametrize("media_type, fmt, extension", [("image/jpeg", "JPEG", ".jpg"), ("image/webp", "WEBP", ".webp")])
async def test_blocking_jpeg_and_webp_are_re_encoded(client, media_type, fmt, extension):
    resp = await client.post("/api/v1/prompts", json=image_prompt(color=0x0000FF, prefix="blue"),
                             headers={"Accept": media_type})
    assert resp.status == 200 and resp.content_type == media_type
    image = Image.open(io.BytesIO(await resp.read()))
    assert image.format == fmt and image.size == (8, 6)
    red, green, blue = image.convert("RGB").getpixel((3, 3))
    assert red < 10 and green < 10 and blue > 245
    assert resp.headers["Content-Disposition"] == f'filename="blue_00001_{extension}"'


async def test_accept_negotiation_picks_the_most_preferred_supported_type(client):
    accept = "text/html, image/webp;q=0.5, image/png;q=0.9, application/json;q=0.1"
    resp = await client.post("/api/v1/prompts", json=image_prompt(color=3), headers={"Accept": accept})
    assert resp.status == 200 and resp.content_type == "image/png"
    resp = await client.post("/api/v1/prompts", json=image_prompt(color=4), headers={"Accept": "*/*"})
    assert resp.status == 200 and resp.content_type == "application/json"
    resp = await client.post("/api/v1/prompts", json=image_prompt(color=5), headers={"Accept": "image/*"})
    assert resp.status == 200 and resp.content_type == "image/png"


async def test_the_comfyui_request_shape_is_accepted_too_with_the_same_digest(client):
    prompt = image_prompt(color=0x123456)
    resp = await client.post("/api/v1/prompts", json={"prompt": prompt, "client_id": "v1",
                                                      "extra_data": {"note": 1}})
    assert resp.status == 200
    assert resp.headers["Digest"] == f"SHA256={digest(prompt)}"
    history = await wait_history(client, (await resp.json())["prompt_id"])
    assert history["prompt"][2] == prompt and history["prompt"][3] == {"note": 1, "client_id": "v1"}


async def test_no_image_output_is_204_for_images_and_plain_outputs_for_json(client, spec):
    resp = await client.post("/api/v1/prompts", json=value_prompt(41), headers={"Accept": "image/png"})
    assert resp.status == 204 and await resp.read() == b""
    assert "Location" not in resp.headers
    body = await conforms(spec, client, "POST", "/api/v1/prompts", 200, json=value_prompt(42))
    assert body["urls"] == [] and body["outputs"] == {"2": {"values": [42]}}


# -- asynchronous runs --------------------------------------------------------------------------------------------

async def test_respond_async_answers_202_then_the_prompt_can_be_polled(client, spec):
    body = await conforms(spec, client, "POST", "/api/v1/prompts", 202, json=slow_prompt(7, steps=30),
                          headers={"Prefer": "respond-async"})
    prompt_id = body["prompt_id"]
    assert set(body) == {"prompt_id"}
    resp = await client.post("/api/v1/prompts", json=value_prompt(8), headers={"Prefer": "respond-async"})
    assert resp.headers["Location"] == f"/api/v1/prompts/{(await resp.json())['prompt_id']}"
    assert int(resp.headers["Retry-After"]) >= 1

    assert (await client.get(f"/api/v1/prompts/{prompt_id}")).status == 204  # running (or pending)
    deadline = asyncio.get_running_loop().time() + 120
    while (resp := await client.get(f"/api/v1/prompts/{prompt_id}")).status == 204:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert resp.status == 200 and await resp.json() == {"2": {"values": [7]}}
    await conforms(spec, client, "GET", f"/api/v1/prompts/{prompt_id}", 200)


async def test_respond_async_can_be_asked_for_in_the_accept_header(client):
    resp = await client.post("/api/v1/prompts", json=value_prompt(9),
                             headers={"Accept": "application/json+respond-async"})
    assert resp.status == 202
    await wait_history(client, (await resp.json())["prompt_id"])


async def test_unknown_prompt_is_404(client, spec):
    body = await conforms(spec, client, "GET", "/api/v1/prompts/no-such-prompt", 404)
    assert body["error"]["type"] == "not_found"


# -- failures and refusals ----------------------------------------------------------------------------------------

async def test_a_failing_node_is_500_with_the_execution_status(client, spec):
    body = await conforms(spec, client, "POST", "/api/v1/prompts", 500, json=failing_prompt("kaput"))
    assert body["status_str"] == "error" and body["completed"] is False
    errors = [data for kind, data in body["messages"] if kind == "execution_error"]
    assert errors[0]["exception_message"] == "kaput\n" and errors[0]["node_type"] == "TestFail"
    prompt_id = errors[0]["prompt_id"]
    assert await conforms(spec, client, "GET", f"/api/v1/prompts/{prompt_id}", 500) == body


async def test_validation_errors_are_400_with_comfyui_body(client, spec):
    invalid = {"1": {"class_type": "TestValidated", "inputs": {"value": 3}},
               "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}
    body = await conforms(spec, client, "POST", "/api/v1/prompts", 400, json=invalid)
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["1"]["errors"][0]["details"] == "value - 3 is odd"
    for kwargs in ({"data": b"{"}, {"data": b""}, {"json": [1]}, {"json": {}},
                   {"json": {"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}},
                   {"json": {"prompt": value_prompt(), "extra_data": [1]}},
                   {"json": value_prompt(), "headers": {"Accept": "text/html"}}):
        body = await conforms(spec, client, "POST", "/api/v1/prompts", 400, **kwargs)
        assert body["error"]["message"]
    history = await (await client.get("/history")).json()
    assert history == {}  # nothing was queued


async def test_a_full_queue_is_429(aiohttp_client, tmp_path, registry, spec):
    client = await aiohttp_client(create_app(Settings(base_directory=tmp_path, cpu=True, max_queue_size=1),
                                             registry))
    running = await queue_slow(client, 11)
    await wait_running(client, running)
    body = await conforms(spec, client, "POST", "/api/v1/prompts", 429, json=value_prompt(12))
    assert body["error"]["type"] == "queue_full"
    form = FormData()
    form.add_field("prompt", json.dumps(value_prompt(13)))
    form.add_field("image", png_bytes(), filename="never.png", content_type="image/png")
    assert (await client.post("/api/v1/prompts", data=form)).status == 429
    assert not (tmp_path / "input" / "never.png").exists()  # refused before anything was written
    await client.post("/interrupt")
    await wait_history(client, running)


async def test_a_prompt_deleted_from_the_queue_ends_its_blocking_request(client):
    running = await queue_slow(client, 21)
    await wait_running(client, running)
    blocked = asyncio.ensure_future(client.post("/api/v1/prompts", json=value_prompt(22)))
    deadline = asyncio.get_running_loop().time() + 120
    while not (pending := (await (await client.get("/queue")).json())["queue_pending"]):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert (await client.post("/queue", json={"delete": [pending[0][1]]})).status == 200
    resp = await asyncio.wait_for(blocked, 10)
    body = await resp.json()
    assert resp.status == 500 and body["status_str"] == "error"
    assert [kind for kind, _ in body["messages"]] == ["execution_interrupted"]
    assert await (await client.get(f"/history/{pending[0][1]}")).json() == {}  # as upstream: never ran
    await client.post("/interrupt")
    await wait_history(client, running)


# -- digests and the last prompt ----------------------------------------------------------------------------------

async def test_images_can_be_fetched_again_by_digest(client, spec):
    prompt = image_prompt(color=0xFFFF00, prefix="again")
    assert (await client.get(f"/api/v1/images/{digest(prompt)}")).status == 404
    resp = await client.post("/api/v1/prompts", json=prompt, headers={"Accept": "image/png"})
    first = await resp.read()
    location = resp.headers["Location"]
    again = await client.get(location)
    assert again.status == 200 and again.content_type == "image/png" and await again.read() == first
    assert again.headers["Content-Disposition"] == 'filename="again_00001_.png"'
    await conforms(spec, client, "GET", location, 200)
    body = await conforms(spec, client, "GET", f"/api/v1/images/{'0' * 64}", 404)
    assert body["error"]["type"] == "not_found"
    assert (await client.get("/api/v1/images/not-a-digest")).status == 404


async def test_get_prompts_answers_the_last_prompt_run(client, spec):
    await conforms(spec, client, "GET", "/api/v1/prompts", 404)
    await client.post("/api/v1/prompts", json=value_prompt(31))
    last = value_prompt(32)
    await client.post("/prompt", json={"prompt": last})  # a prompt from the frontend counts as well
    deadline = asyncio.get_running_loop().time() + 120
    while await (await client.get("/api/v1/prompts")).json() != last:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert await conforms(spec, client, "GET", "/api/v1/prompts", 200) == last


# -- uploads in the same request ----------------------------------------------------------------------------------

def load_image_prompt(name: str) -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "loaded"}}}


async def test_multipart_uploads_files_the_prompt_names(client, tmp_path, spec):
    form = FormData()
    form.add_field("prompt", json.dumps(load_image_prompt("v1upload.png")))
    form.add_field("image", png_bytes(), filename="v1upload.png", content_type="image/png")
    resp = await client.post("/api/v1/prompts", data=form, headers={"Accept": "image/png"})
    assert resp.status == 200, await resp.text()
    image = Image.open(io.BytesIO(await resp.read()))
    assert image.size == (5, 4) and image.convert("RGB").getpixel((2, 2)) == (20, 40, 220)
    assert (tmp_path / "input" / "v1upload.png").read_bytes() == png_bytes()
    assert resp.headers["Digest"] == f"SHA256={digest(load_image_prompt('v1upload.png'))}"

    # The prompt as an application/json part, in ComfyUI's request shape; the upload replaces the file.
    form = FormData()
    form.add_field("request", json.dumps({"prompt": load_image_prompt("v1upload.png")}),
                   content_type="application/json")
    form.add_field("file", png_bytes(color=(200, 10, 10)), filename="v1upload.png", content_type="image/png")
    body = await conforms(spec, client, "POST", "/api/v1/prompts", 200, data=form)
    (saved,) = body["outputs"]["2"]["images"]
    view = await client.get("/view", params=saved)
    assert Image.open(io.BytesIO(await view.read())).convert("RGB").getpixel((0, 0)) == (200, 10, 10)


async def test_multipart_refusals(client, tmp_path, spec):
    no_prompt = FormData()
    no_prompt.add_field("image", png_bytes(), filename="a.png", content_type="image/png")
    not_image = FormData()
    not_image.add_field("prompt", json.dumps(load_image_prompt("notes.txt")))
    not_image.add_field("image", b"just text", filename="notes.txt", content_type="text/plain")
    escaping = FormData()
    escaping.add_field("prompt", json.dumps(load_image_prompt("x.png")))
    escaping.add_field("image", png_bytes(), filename="../x.png", content_type="image/png")
    bad_json = FormData()
    bad_json.add_field("prompt", "{nope")
    for form in (no_prompt, not_image, escaping, bad_json):
        body = await conforms(spec, client, "POST", "/api/v1/prompts", 400, data=form)
        assert body["error"]["message"]
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "input" / "notes.txt").exists()
