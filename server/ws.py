"""The /ws endpoint and the EventHub: the only place where engine events cross from the worker thread to the
event loop. Every client has a bounded send queue drained by its own task, so one client that stops reading
never delays the others: previews are dropped for it first, and it is disconnected past the bound."""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid

from aiohttp import WSMsgType, web

from engine.events import FORMAT_PNG, PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA

log = logging.getLogger("comfyd.ws")

# A droppable frame (preview) is skipped once this many messages wait for a client.
PREVIEW_BACKLOG = 8


def binary_frame(event_type: int, payload: bytes) -> bytes:
    """A binary websocket frame: the 4-byte big-endian event type, then the payload."""
    return struct.pack(">I", event_type) + payload


class _Client:
    def __init__(self, sid: str, ws: web.WebSocketResponse, bound: int):
        self.sid = sid
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=bound)
        self.feature_flags: dict = {}
        self.task: asyncio.Task | None = None

    def offer(self, frame, droppable: bool) -> bool:
        """Queue a frame; False when the client is hopelessly behind and must be dropped."""
        if droppable and self.queue.qsize() >= PREVIEW_BACKLOG:
            return True
        try:
            self.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            return droppable

    async def drain(self) -> None:
        try:
            while True:
                frame = await self.queue.get()
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError) as ex:  # the peer went away mid-send
            log.debug("websocket client %s gone: %s", self.sid, ex)


class EventHub:
    """Implements engine.events.EventSink for websocket clients."""

    def __init__(self, bound: int = 1024, server_features: dict | None = None):
        self.bound = bound
        self.server_features = server_features or {}
        self.clients: dict[str, _Client] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue_remaining = lambda: 0

    def bind(self, loop: asyncio.AbstractEventLoop, queue_remaining) -> None:
        self.loop = loop
        self.queue_remaining = queue_remaining

    # -- EventSink (any thread) ---------------------------------------------------------------------------

    def send(self, event: str, data: dict, sid: str | None = None) -> None:
        self._call(self._dispatch, json.dumps({"type": event, "data": data}), sid, False)

    def send_bytes(self, event_type: int, payload: bytes, sid: str | None = None, *, droppable: bool = True,
                   metadata: dict | None = None) -> None:
        if metadata is not None:
            self._call(self._send_preview, payload, metadata, sid, droppable)
        else:
            self._call(self._dispatch, binary_frame(event_type, payload), sid, droppable)

    def queue_changed(self) -> None:
        self.send("status", self.status(self.queue_remaining()))

    def connected(self, sid: str) -> bool:
        """Whether `sid` has a socket now (a lock-free dict lookup: safe from any thread, maybe just stale)."""
        return sid in self.clients

    def _call(self, function, *args) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # loop closed while shutting down
            pass

    # -- event loop side ----------------------------------------------------------------------------------

    @staticmethod
    def status(remaining: int, sid: str | None = None) -> dict:
        data = {"status": {"exec_info": {"queue_remaining": remaining}}}
        if sid is not None:
            data["sid"] = sid
        return data

    def _send_preview(self, payload: bytes, metadata: dict, sid: str | None, droppable: bool) -> None:
        """A PREVIEW_IMAGE payload (u32 format code, image) goes as a PREVIEW_IMAGE_WITH_METADATA frame (u32 JSON
        length, JSON metadata with the image's media type, image) to the prompt's client when it announced
        `supports_preview_metadata`, as ComfyUI does; everyone else gets the plain frame."""
        client = self.clients.get(sid) if sid is not None else None
        if client is None or client.feature_flags.get("supports_preview_metadata") is not True:
            self._dispatch(binary_frame(PREVIEW_IMAGE, payload), sid, droppable)
            return
        (code,) = struct.unpack(">I", payload[:4])
        meta = json.dumps({**metadata, "image_type": "image/png" if code == FORMAT_PNG else "image/jpeg"}).encode()
        payload = struct.pack(">I", len(meta)) + meta + payload[4:]
        self._dispatch(binary_frame(PREVIEW_IMAGE_WITH_METADATA, payload), sid, droppable)

    def _dispatch(self, frame, sid, droppable) -> None:
        targets = list(self.clients.values()) if sid is None else [self.clients[sid]] if sid in self.clients else []
        for client in targets:
            if not client.offer(frame, droppable):
                log.warning("websocket client %s stopped reading; disconnecting it", client.sid)
                self._drop(client)

    def _drop(self, client: _Client, code: int = 1008, reason: bytes = b"client too slow") -> asyncio.Future:
        if self.clients.get(client.sid) is client:
            del self.clients[client.sid]
        if client.task is not None:
            client.task.cancel()
        # Bounded: a peer that never answers the close handshake must not hold anything up.
        return asyncio.ensure_future(asyncio.wait_for(client.ws.close(code=code, message=reason), 2))

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        old = self.clients.pop(sid, None)
        if old is not None:
            self._drop(old)
        client = _Client(sid, ws, self.bound)
        self.clients[sid] = client
        client.task = asyncio.ensure_future(client.drain())
        client.offer(json.dumps({"type": "status", "data": self.status(self.queue_remaining(), sid)}), False)
        try:
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(client, msg.data, first)
                    first = False
        finally:
            if self.clients.get(sid) is client:
                del self.clients[sid]
            client.task.cancel()
        return ws

    def _on_text(self, client: _Client, text: str, first: bool) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            log.debug("ignoring non-JSON websocket message from %s", client.sid)
            return
        if first and isinstance(message, dict) and message.get("type") == "feature_flags":
            flags = message.get("data")
            client.feature_flags = flags if isinstance(flags, dict) else {}
            client.offer(json.dumps({"type": "feature_flags", "data": self.server_features}), False)

    async def close_all(self) -> None:
        closing = [self._drop(client, 1001, b"server shutting down") for client in list(self.clients.values())]
        await asyncio.gather(*closing, return_exceptions=True)
