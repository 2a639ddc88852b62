"""/internal/*: routes ComfyUI keeps for its own frontend (served only under /internal, never under /api):
the terminal panel's logs, the model folder paths and the file listings of input/output/temp."""
from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import bad_request, read_json_object
from ..files import KINDS, MediaStore
from ..keys import ENGINE, LOGS


async def get_logs(request: web.Request) -> web.Response:
    return web.json_response(request.app[LOGS].text())


async def get_logs_raw(request: web.Request) -> web.Response:
    logs = request.app[LOGS]
    return web.json_response({"entries": logs.snapshot(), "size": logs.terminal_size()})


async def subscribe_logs(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    client_id, enabled = body.get("clientId"), body.get("enabled")
    if not isinstance(client_id, str) or not client_id or not isinstance(enabled, bool):
        raise bad_request("Expected {\"clientId\": <websocket client id>, \"enabled\": true|false}.",
                          f"got {body!r}"[:200])
    request.app[LOGS].subscribe(client_id, enabled)
    return web.Response()


async def get_folder_paths(request: web.Request) -> web.Response:
    folders = request.app[ENGINE].folders
    return web.json_response({name: [str(p) for p in folders.paths(name)] for name in folders.names()})


async def get_files(request: web.Request) -> web.Response:
    kind = request.match_info["directory_type"]
    if kind not in KINDS:
        return web.json_response({"error": "Invalid directory type"}, status=400)
    store = MediaStore(request.app[ENGINE].folders)
    return web.json_response(await asyncio.to_thread(store.newest_first, kind))
