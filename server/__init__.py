"""comfyd's HTTP and websocket server (aiohttp).

`PromptServer` is exported for custom nodes written for ComfyUI (`from server import PromptServer`).
"""
from .compat import PromptServer

__all__ = ["PromptServer"]
