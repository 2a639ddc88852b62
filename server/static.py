"""Static files: the web app at /, workflow templates under /templates, node docs under /docs, and extension
JavaScript under /extensions/<package>/ (custom nodes' web folders, else the bundle's own extensions/ folder).

Every file is found through `safe_join`, so nothing outside those folders is served. Media types come from a fixed
table (ES modules are refused by browsers unless served as JavaScript), and the cache policy is ComfyUI's.
"""
from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

from aiohttp import web

from engine.folders import safe_join

from .compat import extension_web_dirs
from .errors import bad_request
from .frontend import Frontend
from .keys import ENGINE, FRONTEND, SETTINGS

FALLBACK_INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>comfyd</title></head>
<body><h1>comfyd</h1><p>The ComfyUI API is served here (see <a href="/api/system_stats">/api/system_stats</a>).
No web frontend is installed.</p></body></html>"""
NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"}
MAX_NAME_BYTES = 255

MEDIA_TYPES = {
    ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".json": "application/json", ".map": "application/json", ".md": "text/markdown", ".txt": "text/plain",
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".webp": "image/webp", ".gif": "image/gif", ".ico": "image/x-icon", ".webm": "video/webm",
    ".mp4": "video/mp4", ".mp3": "audio/mpeg", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
    ".otf": "font/otf", ".eot": "application/vnd.ms-fontobject", ".wasm": "application/wasm",
}
TEXT_TYPES = ("text/", "application/json")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def media_type(path: Path) -> str:
    kind = MEDIA_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return kind + "; charset=utf-8" if kind.startswith(TEXT_TYPES) else kind


def cache_policy(path: str, status: int) -> str | None:
    """ComfyUI's Cache-Control for a request path: scripts, styles and index*.json always revalidate (the app
    updates in place); images are cached for a day (an hour when missing)."""
    name = path.rsplit("/", 1)[-1]
    if path.endswith((".js", ".css")) or (name.startswith("index") and name.endswith(".json")):
        return "no-cache"
    if not path.lower().endswith(IMAGE_SUFFIXES):
        return None
    if status == 404:
        return "public, max-age=3600"
    if status in (200, 201, 202, 203, 204, 205, 206, 301, 308):
        return "public, max-age=86400"
    return "no-cache" if status in (302, 303, 307) else None


@web.middleware
async def cache_control(request: web.Request, handler):
    response = await handler(request)
    policy = cache_policy(request.path, response.status)
    if policy is not None:
        response.headers.setdefault("Cache-Control", policy)
    return response


def locate(roots, relative: str) -> Path | None:
    """The file `relative` under the first root that has it, or None; 400/403 as an HTTP error. Blocking."""
    if "\x00" in relative or any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES
                                 for part in relative.split("/")):
        raise bad_request("Invalid file name.", relative[:200])
    for root in roots:
        path = safe_join(root, relative)
        if path is None:
            raise bad_request("The path leaves the served folder.", relative[:200], status=403)
        if path.is_file():
            return path
    return None


async def serve(roots, relative: str) -> web.StreamResponse:
    path = await asyncio.to_thread(locate, [r for r in roots if r is not None], relative)
    if path is None:
        return web.Response(status=404)  # as upstream: an empty 404 for anything not routed or not there
    return web.FileResponse(path, headers={"Content-Type": media_type(path)})


async def index(request: web.Request) -> web.StreamResponse:
    root = request.app[FRONTEND].web_root
    if root is None:
        return web.Response(text=FALLBACK_INDEX, content_type="text/html", headers=NO_CACHE)
    return web.FileResponse(root / "index.html", headers={**NO_CACHE, "Content-Type": "text/html"})


async def web_file(request: web.Request) -> web.StreamResponse:
    return await serve([request.app[FRONTEND].web_root], request.match_info["path"])


async def template_file(request: web.Request) -> web.StreamResponse:
    return await serve(request.app[FRONTEND].template_roots, request.match_info["path"])


async def doc_file(request: web.Request) -> web.StreamResponse:
    return await serve([request.app[FRONTEND].docs_root], request.match_info["path"])


async def extension_file(request: web.Request) -> web.StreamResponse:
    name, path = request.match_info["package"], request.match_info["path"]
    # A custom node package's web folder wins over the bundle's extensions/<name>/, as in ComfyUI.
    for package in extension_web_dirs(request.app[ENGINE].registry.packages):
        if package.name == name:
            return await serve([package.web_directory], path)
    web_root = request.app[FRONTEND].web_root
    return await serve([web_root / "extensions" if web_root is not None else None], f"{name}/{path}")


def add_static_routes(app: web.Application) -> None:
    """Resolve the frontend (FrontendError for flags that cannot be honoured) and route its files. Called after
    the API routes: `/{path}` matches anything they do not."""
    app[FRONTEND] = Frontend.from_settings(app[SETTINGS])
    app.router.add_get("/", index)
    app.router.add_get("/extensions/{package}/{path:.+}", extension_file)
    app.router.add_get("/templates/{path:.+}", template_file)
    app.router.add_get("/docs/{path:.+}", doc_file)
    app.router.add_get("/{path:.+}", web_file)
