"""POST /upload/image, /upload/mask; GET /view, /view_metadata/{folder_name}, /experiment/models/preview/...
Parsing and responses only: the file work is `server.files.MediaStore`, run off the event loop."""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ..errors import bad_request, read_form
from ..files import FileRef, MediaError, MediaStore, inline_content_type, render
from ..keys import ENGINE


async def upload_image(request: web.Request) -> web.Response:
    form = await read_form(request, request.app[ENGINE].settings.max_upload_size)
    data, target, overwrite = await _upload(form)
    name = await _run(_store(request).save_upload, data, target, overwrite=overwrite)
    return _uploaded(name, target)


async def upload_mask(request: web.Request) -> web.Response:
    form = await read_form(request, request.app[ENGINE].settings.max_upload_size)
    data, target, overwrite = await _upload(form)
    original = _original_ref(form)
    name = await _run(_store(request).save_mask, data, target, original, overwrite=overwrite)
    return _uploaded(name, target)


async def view(request: web.Request) -> web.StreamResponse:
    query = request.query
    if "filename" not in query:
        raise bad_request("The filename query parameter is required.", status=404)
    ref = FileRef(query.get("type", "output"), query.get("subfolder", ""), query["filename"])
    path = await _run(_store(request).locate, ref)
    disposition = 'filename="{}"'.format(path.name.replace("\\", "\\\\").replace('"', '\\"'))
    preview, channel = query.get("preview"), query.get("channel", "")
    if preview is not None or channel in ("rgb", "a"):
        body, content_type = await _run(render, path, preview, channel)
        return web.Response(body=body, content_type=content_type, headers={"Content-Disposition": disposition})
    return web.FileResponse(path, headers={
        "Content-Disposition": disposition,
        "Content-Type": inline_content_type(path.name),
        # Browsers must not sniff a download type back into something they would render.
        "X-Content-Type-Options": "nosniff",
    })


async def view_metadata(request: web.Request) -> web.Response:
    if "filename" not in request.query:
        raise bad_request("The filename query parameter is required.", status=404)
    metadata = await _run(_store(request).model_metadata, request.match_info["folder_name"],
                          request.query["filename"])
    return web.json_response(metadata)


async def model_preview(request: web.Request) -> web.Response:
    info = request.match_info
    body = await _run(_store(request).model_preview, info["folder"], info["path_index"], info["filename"])
    return web.Response(body=body, content_type="image/webp")


def _store(request: web.Request) -> MediaStore:
    return MediaStore(request.app[ENGINE].folders)


async def _run(method, *args, **kwargs):
    try:
        return await asyncio.to_thread(method, *args, **kwargs)
    except MediaError as ex:
        raise bad_request(ex.message, ex.details, type_="not_found" if ex.status == 404 else "invalid_request",
                          status=ex.status)


async def _upload(form) -> tuple[bytes, FileRef, bool]:
    """The uploaded file's bytes, where it is to be stored, and whether it may replace a file of that name."""
    field = form.get("image")
    if not isinstance(field, web.FileField):
        raise bad_request("The form needs an 'image' file field.")
    target = FileRef(_text(form, "type", "input"), _text(form, "subfolder", ""), field.filename or "")
    data = await asyncio.to_thread(field.file.read)
    return data, target, _text(form, "overwrite", "") in ("true", "1")


def _original_ref(form) -> FileRef:
    raw = _text(form, "original_ref", "")
    if not raw:
        raise bad_request("A mask upload needs 'original_ref': the JSON {filename, subfolder, type} of its image.")
    try:
        ref = json.loads(raw)
    except ValueError as ex:
        raise bad_request("'original_ref' is not valid JSON.", str(ex))
    if not isinstance(ref, dict):
        raise bad_request("'original_ref' must be a JSON object with filename, subfolder and type.")
    fields = {"type": ref.get("type", "output"), "subfolder": ref.get("subfolder", ""), "filename": ref.get("filename")}
    for key, value in fields.items():
        if not isinstance(value, str):
            raise bad_request(f"'original_ref.{key}' must be a string.", f"got {value!r}"[:200])
    return FileRef(fields["type"], fields["subfolder"], fields["filename"])


def _text(form, key: str, default: str) -> str:
    value = form.get(key)
    if value is None:
        return default
    if isinstance(value, web.FileField):
        raise bad_request(f"The form field '{key}' must be text, not a file.")
    if isinstance(value, (bytes, bytearray)):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(f"The form field '{key}' is not UTF-8 text.")
    return value


def _uploaded(name: str, target: FileRef) -> web.Response:
    return web.json_response({"name": name, "subfolder": target.subfolder, "type": target.kind})
