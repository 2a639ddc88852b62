"""GET /history, /history/{prompt_id}; POST /history (delete, clear). Never touches files on disk."""
from __future__ import annotations

from aiohttp import web

from ..errors import bad_request, id_list, read_json_object
from ..keys import ENGINE


async def get_history(request: web.Request) -> web.Response:
    max_items = _integer(request.query.get("max_items"), "max_items", minimum=0)
    offset = _integer(request.query.get("offset"), "offset")
    return web.json_response(request.app[ENGINE].history.page(max_items, offset))


async def get_history_item(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].history.get(request.match_info["prompt_id"]))


async def post_history(request: web.Request) -> web.Response:
    history = request.app[ENGINE].history
    body = await read_json_object(request)
    to_delete = id_list(body, "delete")
    if body.get("clear"):
        history.clear()
    for prompt_id in to_delete:
        history.delete(prompt_id)
    return web.Response(status=200)


def _integer(raw: str | None, name: str, minimum: int | None = None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer.", f"got {raw!r}"[:200])
    if minimum is not None and value < minimum:
        raise bad_request(f"{name} must be at least {minimum}.", f"got {value}")
    return value
