"""`server.PromptServer` for nodes written for ComfyUI: `PromptServer.instance.send_sync(...)` to message clients,
`PromptServer.instance.routes` to add HTTP routes (served bare and under /api, as ComfyUI does), `.app` to add
to the aiohttp application directly (static folders), `.add_on_prompt_handler(f)` to rewrite each body POSTed to
/prompt before it is validated, `.prompt_queue` to see the running prompts and queue more, `.last_node_id` (the node
running now)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from engine import context
from engine import events
from engine.events import PREVIEW_IMAGE, TEXT, progress_text

log = logging.getLogger("comfyd.server")


class WebDirectory(NamedTuple):
    name: str
    web_directory: Path


def extension_web_dirs(packages) -> list[WebDirectory]:
    """The custom node packages' web folders served under /extensions/<name>/: each package's WEB_DIRECTORY, then
    the folders packs put in `nodes.EXTENSION_WEB_DIRS` themselves (Impact Pack does) under names that have none."""
    import nodes

    found = [WebDirectory(p.name, p.web_directory) for p in packages if p.web_directory is not None]
    named = {entry.name for entry in found}
    found += [WebDirectory(name, Path(folder)) for name, folder in nodes.EXTENSION_WEB_DIRS.items()
              if name not in named]
    return found


class BinaryEventTypes:
    """The binary websocket message types, for packs that send their own with `send_sync(type, data)`."""

    PREVIEW_IMAGE = events.PREVIEW_IMAGE
    UNENCODED_PREVIEW_IMAGE = events.UNENCODED_PREVIEW_IMAGE
    TEXT = events.TEXT
    PREVIEW_IMAGE_WITH_METADATA = events.PREVIEW_IMAGE_WITH_METADATA


class PromptQueue:
    """ComfyUI's `PromptQueue` over comfyd's engine queue. Queue entries are ComfyUI's lists: [number, prompt_id,
    prompt, extra_data, outputs_to_execute]."""

    def __init__(self, server: "PromptServer"):
        self.server = server

    def _engine(self):
        if self.server.engine is None:
            raise RuntimeError("the prompt queue is not running yet (custom nodes are still loading)")
        return self.server.engine

    @property
    def currently_running(self) -> dict:
        """{number: entry} of the running prompts; empty before the engine exists (while packs import)."""
        if self.server.engine is None:
            return {}
        running, _ = self.server.engine.queue.snapshot()
        return {item.number: item.as_list() for item in running}

    def get_current_queue(self) -> tuple[list, list]:
        """(running entries, pending entries in the order they will run)."""
        running, pending = self._engine().queue.snapshot()
        return [item.as_list() for item in running], [item.as_list() for item in pending]

    def get_tasks_remaining(self) -> int:
        return self._engine().queue_remaining()

    def put(self, item) -> None:
        """Queue (number, prompt_id, prompt, extra_data, outputs_to_execute[, sensitive]) as given, unvalidated
        (packs requeue a prompt that is already running); a sixth element's secrets rejoin extra_data."""
        number, prompt_id, prompt, extra_data, outputs, *sensitive = item
        extra_data = {**extra_data, **(sensitive[0] if sensitive else {})}
        self._engine().submit(prompt, outputs, prompt_id=prompt_id, number=number, extra_data=extra_data)


class PromptServer:
    instance: "PromptServer | None" = None

    def __init__(self, hub):
        self.hub = hub
        self.routes = web.RouteTableDef()
        self.client_id: str | None = None
        self.supports = ["custom_nodes_from_web"]
        self.app: web.Application | None = None  # the aiohttp application, set before custom nodes load
        self.engine = None  # set once created, after custom nodes load: they only see the queue when they run
        self.prompt_queue = PromptQueue(self)
        # ComfyUI's prompt counter; comfyd numbers prompts in its engine, so this only serves packs that count their
        # own (VideoHelperSuite requeues at -number to run next)
        self.number = 0
        self.on_prompt_handlers = []
        PromptServer.instance = self

    @property
    def last_node_id(self) -> str | None:
        """The (display) id of the node running in this thread, None outside a node."""
        ctx = context.current()
        return ctx.display_node_id if ctx is not None else None

    def add_on_prompt_handler(self, handler) -> None:
        """`handler(body) -> body` runs on each POST /prompt body before validation."""
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, body: dict) -> dict:
        for handler in self.on_prompt_handlers:
            try:
                body = handler(body)
            except Exception:
                # as in ComfyUI: a failing handler is logged and the prompt goes on as it was
                log.warning("an on_prompt handler failed", exc_info=True)
        return body

    def send_sync(self, event: str, data, sid: str | None = None) -> None:
        if isinstance(data, (bytes, bytearray)):
            event_type = int(event) if str(event).isdigit() else PREVIEW_IMAGE
            # only previews may be dropped for a client that falls behind
            self.hub.send_bytes(event_type, bytes(data), sid, droppable=event_type == PREVIEW_IMAGE)
        else:
            self.hub.send(event, data, sid)

    def send_progress_text(self, text: str | bytes, node_id: str, sid: str | None = None) -> None:
        """Text the frontend shows on node `node_id`."""
        self.send_sync(str(TEXT), progress_text(node_id, text), sid)

    async def send_json(self, event: str, data, sid: str | None = None) -> None:
        self.hub.send(event, data, sid)

    async def send(self, event: str, data, sid: str | None = None) -> None:
        self.send_sync(event, data, sid)

    def add_routes_to(self, app: web.Application) -> None:
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                app.router.add_route(route.method, route.path, route.handler, **route.kwargs)
                app.router.add_route(route.method, "/api" + route.path, route.handler, **route.kwargs)
