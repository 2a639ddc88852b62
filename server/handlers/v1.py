"""POST/GET /api/v1/prompts, GET /api/v1/prompts/{prompt_id}, GET /api/v1/images/{digest}: run a prompt and get
its outputs in one request. Parsing and responses only: the API's rules are `server.v1`."""
from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web

from engine import HistoryRecord, QueueFull

from ..completion import Completion
from ..errors import NO_SPACE, bad_request, insufficient_storage, read_form, read_json_object
from ..files import FileRef, MediaError, MediaStore
from ..keys import ENGINE, WEBHOOKS
from ..v1 import (JSON, V1Error, Wanted, encoded_image, image_for_digest, negotiate, output_images, outputs_answer,
                  prompt_request, succeeded)
from ..webhooks import webhook_url

# The poll interval suggested to asynchronous clients, in seconds.
RETRY_AFTER = "1"
# Errors of a full disk or quota: 507 Insufficient Storage.
async def post_prompts(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    try:
        wanted = negotiate(request.headers.get("Accept"), request.headers.get("Prefer"))
    except V1Error as ex:
        raise bad_request(str(ex))
    if engine.queue.is_full():  # before any upload is written
        raise _queue_full()
    prompt, extra_data = await _read_prompt(request)
    webhook = webhook_url(extra_data)

    result = await asyncio.to_thread(engine.validate, prompt)
    if not result.ok:
        return web.json_response({"error": result.error, "node_errors": result.node_errors}, status=400)
    prompt_id = str(uuid.uuid4())
    completion = None if wanted.respond_async else Completion(engine, prompt_id)
    try:
        engine.submit(prompt, result.outputs, prompt_id=prompt_id, extra_data=extra_data)
    except QueueFull:
        if completion is not None:
            completion.cancel()
        raise _queue_full()
    if webhook is not None:
        request.app[WEBHOOKS].watch(prompt_id, webhook)
    if completion is None:
        return web.json_response({"prompt_id": prompt_id}, status=202, headers={
            "Location": f"/api/v1/prompts/{prompt_id}", "Retry-After": RETRY_AFTER})
    return await _answer(request, await completion.wait(), wanted)


async def get_prompt(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    prompt_id = request.match_info["prompt_id"]
    record = engine.history.find(prompt_id)
    if record is not None:
        if not succeeded(record):
            return web.json_response(record.entry["status"], status=500)
        return web.json_response(record.entry["outputs"])
    running, pending = engine.queue.snapshot()
    if any(item.prompt_id == prompt_id for item in running + pending):
        return web.Response(status=204)
    raise bad_request(f"No prompt {prompt_id!r} is queued, running or in the history.", type_="not_found",
                      status=404)


async def get_last_prompt(request: web.Request) -> web.Response:
    last = request.app[ENGINE].history.page(max_items=1)
    if not last:
        raise bad_request("No prompt has run yet.", type_="not_found", status=404)
    entry = next(iter(last.values()))
    return web.json_response(entry["prompt"][2])


async def get_image(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    digest = request.match_info["digest"].lower()
    ref = await asyncio.to_thread(image_for_digest, engine.history.records(), digest)
    if ref is None:
        raise bad_request(f"No image was made by a prompt with digest {digest!r}."[:300], type_="not_found",
                          status=404)
    return await _image(MediaStore(engine.folders), ref, "image/png", {})


# -- reading the request -------------------------------------------------------------------------------------------

async def _read_prompt(request: web.Request) -> tuple[dict, dict]:
    """(prompt, extra_data) from a JSON body, or from a multipart form whose files are first saved to input/."""
    if request.content_type != "multipart/form-data":
        return _unwrap(await read_json_object(request))
    raw, uploads = _split_form(await read_form(request, request.app[ENGINE].settings.max_upload_size))
    if raw is None:
        raise bad_request("The form needs the prompt: a 'prompt' field, or a part sent as application/json.")
    if isinstance(raw, web.FileField):
        raw = await asyncio.to_thread(raw.file.read)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as ex:
        raise bad_request("The prompt in the form is not valid JSON.", str(ex), type_="invalid_json")
    if not isinstance(body, dict):
        raise bad_request("The prompt in the form must be a JSON object.", type_="invalid_json")
    prompt, extra_data = _unwrap(body)
    store = MediaStore(request.app[ENGINE].folders)
    for upload in uploads:
        await _save_upload(store, upload)
    return prompt, extra_data


def _split_form(form) -> tuple[str | bytes | web.FileField | None, list[web.FileField]]:
    """The prompt (the `prompt` field, or the first part sent as application/json) and the files to upload."""
    prompt, uploads = None, []
    for name, value in form.items():
        is_file = isinstance(value, web.FileField)
        # aiohttp gives a part without a file name as text when it is text/*, else as bytes.
        is_json = value.content_type == JSON if is_file else isinstance(value, (bytes, bytearray))
        if prompt is None and (name == "prompt" or is_json):
            prompt = value
        elif is_file:
            uploads.append(value)
    return prompt, uploads


def _unwrap(body: dict) -> tuple[dict, dict]:
    try:
        parsed = prompt_request(body)
    except V1Error as ex:
        raise bad_request(str(ex), type_="invalid_prompt")
    return parsed.prompt, parsed.extra_data


async def _save_upload(store: MediaStore, upload: web.FileField) -> None:
    """Saved under its own name in input/, replacing a file of that name, so the prompt can name it."""
    try:
        data = await asyncio.to_thread(upload.file.read)
        await asyncio.to_thread(store.save_upload, data, FileRef("input", "", upload.filename or ""), overwrite=True,
                                images_only=True)  # the images a v1 prompt's LoadImage nodes name
    except MediaError as ex:
        raise bad_request(f"The uploaded file {upload.filename!r}: {ex.message}"[:300], ex.details, status=ex.status)
    except OSError as ex:
        if ex.errno in NO_SPACE:
            raise insufficient_storage(ex)
        raise


def _queue_full() -> web.HTTPException:
    return bad_request("The queue is full (--max-queue-size); try again later.", type_="queue_full", status=429)


# -- answering -------------------------------------------------------------------------------------------------

async def _answer(request: web.Request, record: HistoryRecord, wanted: Wanted) -> web.StreamResponse:
    if not succeeded(record):
        return web.json_response(record.entry["status"], status=500)
    headers = {"Digest": f"SHA256={record.item.digest}"}
    images = output_images(record.entry["outputs"])
    if images:
        headers["Location"] = f"/api/v1/images/{record.item.digest}"
    if wanted.media_type == JSON:
        return web.json_response(outputs_answer(record, str(request.url.origin())), headers=headers)
    if not images:
        return web.Response(status=204, headers=headers)
    return await _image(MediaStore(request.app[ENGINE].folders), images[0], wanted.media_type, headers)


async def _image(store: MediaStore, ref: FileRef, media_type: str, headers: dict) -> web.StreamResponse:
    try:
        body, filename = await asyncio.to_thread(encoded_image, store, ref, media_type)
    except MediaError as ex:  # the file went away or was damaged since the prompt ran
        raise bad_request(ex.message, ex.details, status=ex.status)
    disposition = 'filename="{}"'.format(filename.replace("\\", "\\\\").replace('"', '\\"'))
    headers = {**headers, "Content-Disposition": disposition, "Content-Type": media_type}
    if isinstance(body, bytes):
        return web.Response(body=body, headers=headers)
    return web.FileResponse(body, headers=headers)
