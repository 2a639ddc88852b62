"""ComfyUI's error body, `{"error": {type, message, details, extra_info}, "node_errors": {}}`, as aiohttp errors."""
from __future__ import annotations

import errno
import json

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def error_body(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return {"error": {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}},
            "node_errors": {}}


def bad_request(message: str, details: str = "", type_: str = "invalid_request", status: int = 400) -> web.HTTPException:
    """An HTTP error whose body is ComfyUI's JSON error shape; raise it from a handler."""
    cls = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 409: web.HTTPConflict,
           413: web.HTTPRequestEntityTooLarge, 429: web.HTTPTooManyRequests}.get(status, web.HTTPBadRequest)
    kwargs = {"max_size": 0, "actual_size": 0} if cls is web.HTTPRequestEntityTooLarge else {}
    return cls(text=json.dumps(error_body(type_, message, details)), content_type="application/json", **kwargs)


async def read_json(request: web.Request, *, default=None, required: bool = True):
    """The request's JSON body; a clear 400 (never a 500) when it is missing or malformed."""
    raw = await request.read()
    if not raw.strip():
        if not required:
            return default
        raise bad_request("The request body is empty; a JSON body is required.", type_="invalid_json")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as ex:
        raise bad_request("The request body is not valid JSON.", str(ex), type_="invalid_json")


async def read_json_object(request: web.Request, *, required: bool = True) -> dict:
    body = await read_json(request, default={}, required=required)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", f"got {type(body).__name__}",
                          type_="invalid_json")
    return body


def id_list(body: dict, key: str) -> list[str]:
    """A list of prompt ids under `key` ([] when absent); a clear 400 for anything else."""
    if key not in body:
        return []
    value = body[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"'{key}' must be a list of prompt id strings.", f"got {value!r}"[:200])
    return value


def insufficient_storage(ex: OSError) -> web.HTTPException:
    return web.HTTPInsufficientStorage(content_type="application/json", text=json.dumps(
        error_body("insufficient_storage", "The server has no space left to store the upload.", str(ex))))


async def read_form(request: web.Request, limit: int):
    """The request's multipart form: 413 past `limit` bytes, 507 when the disk is full, 400 when malformed."""
    try:
        return await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise bad_request(f"The request is larger than this server's limit of {limit} bytes.", status=413)
    except OSError as ex:  # aiohttp spools file parts to disk
        if ex.errno in NO_SPACE:
            raise insufficient_storage(ex)
        raise
    except (ValueError, BadHttpMessage) as ex:  # BadHttpMessage: a part's headers are malformed
        raise bad_request("The request body is not a valid multipart form.", str(ex))
