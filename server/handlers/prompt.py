"""POST/GET /prompt: validate and queue a prompt; report queue length."""
from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web

from engine import QueueFull

from ..compat import PromptServer
from ..errors import bad_request, error_body, read_json
from ..keys import ENGINE, WEBHOOKS
from ..webhooks import webhook_url

log = logging.getLogger("comfyd.server")


async def get_prompt(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return web.json_response({"exec_info": {"queue_remaining": engine.queue_remaining()}})


async def post_prompt(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body = await read_json(request)
    if isinstance(body, dict) and PromptServer.instance is not None:
        body = PromptServer.instance.trigger_on_prompt(body)  # packs' on_prompt handlers may rewrite the prompt
    if not isinstance(body, dict) or "prompt" not in body:
        return web.json_response(error_body("no_prompt", "No prompt provided", "No prompt provided"), status=400)
    number = _number(body.get("number"))
    prompt_id = body.get("prompt_id")
    prompt_id = str(prompt_id) if prompt_id is not None else str(uuid.uuid4())
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise bad_request("extra_data must be a JSON object.", type_="invalid_prompt")
    client_id = body.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str):
            raise bad_request("client_id must be a string.", f"got {type(client_id).__name__}",
                              type_="invalid_prompt")
        extra_data = {**extra_data, "client_id": client_id}
    webhook = webhook_url(extra_data)

    # Validation runs off the event loop: a huge graph must not stall other requests.
    result = await asyncio.to_thread(engine.validate, body["prompt"], body.get("partial_execution_targets"))
    if not result.ok:
        log.warning("invalid prompt: %s: %s", result.error["message"], result.error["details"])
        return web.json_response({"error": result.error, "node_errors": result.node_errors}, status=400)
    log.info("got prompt")
    try:
        item = engine.submit(body["prompt"], result.outputs, prompt_id=prompt_id, number=number,
                             front=bool(body.get("front")), extra_data=extra_data)
    except QueueFull as ex:
        raise bad_request(str(ex), type_="queue_full", status=429)
    if webhook is not None:
        request.app[WEBHOOKS].watch(item.prompt_id, webhook)
    return web.json_response({"prompt_id": item.prompt_id, "number": item.number, "node_errors": result.node_errors})


def _number(value) -> float | None:
    """A client-given priority: ComfyUI uses it as a float; anything non-numeric is a 400."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad_request("number must be a number.", f"got {value!r}", type_="invalid_prompt")
    if number != number or number in (float("inf"), float("-inf")):
        raise bad_request("number must be finite.", type_="invalid_prompt")
    return number
