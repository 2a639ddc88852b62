"""comfyd's HTTP and websocket server (aiohttp).

`PromptServer` and `BinaryEventTypes` are exported for custom nodes written for ComfyUI (`from server import
PromptServer`), and so are `web` and `uuid`, which packs take from ComfyUI's server module (`server.web.Response`).
"""
import uuid

from aiohttp import web

from .compat import BinaryEventTypes, PromptServer

__all__ = ["BinaryEventTypes", "PromptServer", "uuid", "web"]
