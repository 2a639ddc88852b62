"""GET/POST /queue and POST /interrupt, /free."""
from __future__ import annotations

from aiohttp import web

from ..errors import bad_request, id_list, read_json, read_json_object
from ..keys import ENGINE


async def get_queue(request: web.Request) -> web.Response:
    running, pending = request.app[ENGINE].queue.snapshot()
    return web.json_response({"queue_running": [i.as_list() for i in running],
                              "queue_pending": [i.as_list() for i in pending]})


async def post_queue(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body = await read_json_object(request)
    to_delete = id_list(body, "delete")
    if body.get("clear"):
        engine.queue.clear()
    for prompt_id in to_delete:
        engine.queue.delete(prompt_id)
    return web.Response(status=200)


async def post_interrupt(request: web.Request) -> web.Response:
    body = await read_json(request, default={}, required=False)
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    if prompt_id is not None and not isinstance(prompt_id, str):
        raise bad_request("prompt_id must be a string.")
    request.app[ENGINE].interrupt(prompt_id or None)
    return web.Response(status=200)


async def post_free(request: web.Request) -> web.Response:
    body = await read_json_object(request, required=False)
    request.app[ENGINE].free(unload_models=bool(body.get("unload_models")),
                             free_memory=bool(body.get("free_memory")))
    return web.Response(status=200)
