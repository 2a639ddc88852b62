"""The application factory: one Engine, one EventHub, the route table, middlewares and lifetimes."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from engine import Engine, Settings
from engine.folders import Folders
from nodes.compat.comfy import cli_args
from nodes.registry import NodeRegistry

from . import middleware, routes, static
from .compat import PromptServer
from .handlers.info import server_features
from .keys import ENGINE, HUB, LOGS, SETTINGS, USERS, WEBHOOKS
from .logs import LogBuffer
from .userdata import UserStore
from .webhooks import Webhooks
from .ws import EventHub

log = logging.getLogger("comfyd.server")


def build_registry(settings: Settings) -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_builtins()
    if not settings.disable_custom_nodes:
        # packs call folder_paths as they are imported, and may edit its table: the engine keeps using this one
        folders = registry.folders = Folders.from_settings(settings)
        folders.activate()
        cli_args.configure(settings)  # and read comfy.cli_args.args
        for directory in folders.paths("custom_nodes"):  # <base>/custom_nodes, then extra_model_paths entries
            for package in registry.load_custom_nodes(directory):
                if package.error:
                    log.warning("custom node package %s failed to load and was skipped", package.name)
    return registry


def create_app(settings: Settings, registry: NodeRegistry | None = None, argv: list[str] | None = None) -> web.Application:
    hub = EventHub(settings.ws_send_queue, server_features(settings))
    logs = LogBuffer(hub)
    logs.capture()
    prompt_server = PromptServer(hub)  # before custom nodes load: they register routes on it at import
    middlewares = [static.cache_control, middleware.errors_as_json]
    if settings.enable_cors_header:
        middlewares.append(middleware.cors(settings.enable_cors_header))
    else:
        middlewares.append(middleware.origin_check)
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_upload_size)
    prompt_server.app = app  # packs add routes (static folders) to it at import, so it comes before they load
    engine = prompt_server.engine = Engine(settings, registry or build_registry(settings), hub, argv=argv)
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[HUB] = hub
    app[USERS] = UserStore(engine.folders.user, multi_user=settings.multi_user)
    app[LOGS] = logs
    app[WEBHOOKS] = Webhooks(engine)

    routes.add_routes(app, hub.handle)
    prompt_server.add_routes_to(app)
    static.add_static_routes(app)
    app.cleanup_ctx.append(app[LOGS].lifetime)
    app.cleanup_ctx.append(app[WEBHOOKS].lifetime)
    app.cleanup_ctx.append(_engine_lifetime)
    return app


async def _engine_lifetime(app: web.Application):
    engine, hub = app[ENGINE], app[HUB]
    hub.bind(asyncio.get_running_loop(), engine.queue_remaining)
    engine.start()
    yield
    await hub.close_all()
    await asyncio.to_thread(engine.stop)
