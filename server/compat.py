"""`server.PromptServer` for nodes written for ComfyUI: `PromptServer.instance.send_sync(...)` to message clients,
`PromptServer.instance.routes` to add HTTP routes (served bare and under /api, as ComfyUI does), `.app` to add
to the aiohttp application directly (static folders)."""
from __future__ import annotations

from aiohttp import web

from engine.events import PREVIEW_IMAGE, TEXT, progress_text


class PromptServer:
    instance: "PromptServer | None" = None

    def __init__(self, hub):
        self.hub = hub
        self.routes = web.RouteTableDef()
        self.client_id: str | None = None
        self.supports = ["custom_nodes_from_web"]
        self.app: web.Application | None = None  # the aiohttp application, set before custom nodes load
        PromptServer.instance = self

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
