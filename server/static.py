"""Static files: the web frontend at / and custom nodes' JavaScript under /extensions/<package>/."""
from __future__ import annotations

from aiohttp import web

FALLBACK_INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>comfyd</title></head>
<body><h1>comfyd</h1><p>The ComfyUI API is served here (see <a href="/api/system_stats">/api/system_stats</a>).
No web frontend is installed.</p></body></html>"""


async def index(request: web.Request) -> web.Response:
    return web.Response(text=FALLBACK_INDEX, content_type="text/html",
                        headers={"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"})


def add_static_routes(app: web.Application, registry) -> None:
    app.router.add_get("/", index)
    for package in registry.packages:
        if package.web_directory is not None:
            app.router.add_static(f"/extensions/{package.name}", package.web_directory, follow_symlinks=False)
