"""Cross-cutting request handling: the origin check, optional CORS, and never a bare 500 for bad input."""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
import urllib.parse

from aiohttp import web

from .errors import error_body

log = logging.getLogger("comfyd.http")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def origin_mismatch(host_header: str, origin_header: str) -> bool:
    """True when a browser page from another origin talks to a loopback server (DNS rebinding, CSRF)."""
    host = urllib.parse.urlsplit("//" + host_header.lower())
    origin = urllib.parse.urlsplit(origin_header.lower())
    if not _is_loopback(host.hostname) or not origin.netloc:
        return False
    # Compare ports only when both sides carry one (some browsers omit default ports).
    if host.port is None or origin.port is None:
        return host.hostname != origin.hostname
    return (host.hostname, host.port) != (origin.hostname, origin.port)


@web.middleware
async def origin_check(request: web.Request, handler):
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    if host and origin and origin != "null" and origin_mismatch(host, origin):
        log.warning("refusing request whose Origin %s does not match Host %s", origin, host)
        return web.Response(status=403, text="Origin does not match Host")
    return await handler(request)


def cors(allowed_origin: str):
    @web.middleware
    async def cors_middleware(request: web.Request, handler):
        response = web.Response() if request.method == "OPTIONS" else await handler(request)
        response.headers["Access-Control-Allow-Origin"] = allowed_origin
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS, PATCH"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, Comfy-User"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    return cors_middleware


@web.middleware
async def errors_as_json(request: web.Request, handler):
    """An unexpected exception becomes a JSON 500 that says what failed, and is logged with its traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as ex:
        log.exception("unhandled error in %s %s", request.method, request.path)
        body = error_body("server_error", "Internal server error", f"{type(ex).__name__}: {ex}")
        return web.Response(status=500, text=json.dumps(body), content_type="application/json")
