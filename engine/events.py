"""How the engine tells the outside world what happens: an event sink the server implements.

The worker thread calls these methods; implementations must be thread-safe and must never block the worker.
"""
from __future__ import annotations

import struct
import time
from typing import Protocol

# Binary websocket frame types (4-byte big-endian header), as ComfyUI numbers them.
PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3  # progress text: u32 length of the node id, the node id, then the UTF-8 text
PREVIEW_IMAGE_WITH_METADATA = 4

# Image format codes that follow the PREVIEW_IMAGE header.
FORMAT_JPEG = 1
FORMAT_PNG = 2


def progress_text(node_id: str, text: str | bytes) -> bytes:
    """The payload of a TEXT frame."""
    node = str(node_id).encode("utf-8")
    return struct.pack(">I", len(node)) + node + (text.encode("utf-8") if isinstance(text, str) else bytes(text))


class EventSink(Protocol):
    def send(self, event: str, data: dict, sid: str | None = None) -> None:
        """A JSON message `{"type": event, "data": data}`; sid None = broadcast to every client."""

    def send_bytes(self, event_type: int, payload: bytes, sid: str | None = None, *, droppable: bool = True,
                   metadata: dict | None = None) -> None:
        """A binary frame: 4-byte big-endian event type, then the payload. A PREVIEW_IMAGE may carry `metadata`
        (node_id, display_node_id, parent_node_id, real_node_id, prompt_id) for clients that can read it."""

    def queue_changed(self) -> None:
        """The queue length changed: a `status` broadcast is due."""


class NullSink:
    """Drops every event (embedded use, tests of the engine alone)."""

    def send(self, event, data, sid=None):
        pass

    def send_bytes(self, event_type, payload, sid=None, *, droppable=True, metadata=None):
        pass

    def queue_changed(self):
        pass


def timestamp_ms() -> int:
    return int(time.time() * 1000)


def exception_type_name(cls) -> str:
    """ComfyUI's `exception_type`: the qualified name, without `builtins.`."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
