"""What a running node may do besides computing: report progress, send previews, honour interrupts.

The executor installs a NodeContext for the node it is running; nodes reach it through `current()`
(or the helpers below) so deep code such as a sampler loop needs no extra parameters.
"""
from __future__ import annotations

import contextvars
import dataclasses
import io
import struct
import threading
from typing import Callable

from . import events


class Interrupted(Exception):
    """Raised inside a node when the user interrupted the running prompt."""

    def __init__(self):
        super().__init__("Processing interrupted")


# ComfyUI's --preview-method values (taesd / auto use a TAESD decoder from models/vae_approx when there is one).
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")


@dataclasses.dataclass
class NodeContext:
    prompt_id: str
    node_id: str
    display_node_id: str
    interrupt: threading.Event
    on_progress: Callable[[str, float, float], None]
    on_preview: Callable[[bytes, bool], None]
    preview_method: str = "none"
    models: object = None  # the engine's ModelManager (engine.models.manager), for nodes that load models
    on_text: Callable[[str, str], None] | None = None  # (node id, text)

    def send_text(self, text: str) -> None:
        """Text the frontend shows on the running node (ComfyUI's progress text)."""
        if self.on_text is not None:
            self.on_text(self.node_id, text)

    def check_interrupted(self) -> None:
        if self.interrupt.is_set():
            raise Interrupted()

    def progress(self, value: float, total: float, preview=None, node_id: str | None = None) -> None:
        """Report step `value` of `total` for the running node (or, inside an expansion or a list, `node_id`);
        `preview` is (format, PIL image, max size) or None."""
        self.on_progress(node_id or self.node_id, value, total)
        if preview is not None:
            self.on_preview(encode_preview(*preview), True)

    def send_image(self, image_format: str, image) -> None:
        """An output image as a binary frame (SaveImageWebsocket): never dropped, never resized."""
        self.on_preview(encode_preview(image_format, image, None), False)


_current: contextvars.ContextVar[NodeContext | None] = contextvars.ContextVar("comfyd_node_context", default=None)


def current() -> NodeContext | None:
    return _current.get()


def activate(ctx: NodeContext | None):
    return _current.set(ctx)


def deactivate(token) -> None:
    _current.reset(token)


_fallback_models = None


def model_manager():
    """The running engine's ModelManager; outside a prompt (direct node calls), a CPU one."""
    global _fallback_models
    ctx = current()
    if ctx is not None and ctx.models is not None:
        return ctx.models()
    if _fallback_models is None:
        import torch

        from .models.manager import ModelManager

        _fallback_models = ModelManager(torch.device("cpu"))
    return _fallback_models


def check_interrupted() -> None:
    ctx = current()
    if ctx is not None:
        ctx.check_interrupted()


class ProgressBar:
    """Step counter for long loops, reported on the websocket as `progress` for the running node."""

    def __init__(self, total: int, node_id: str | None = None):
        self.total = total
        self.current = 0
        self.node_id = node_id  # None: the node running when it updates

    def update_absolute(self, value: float, total: float | None = None, preview=None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        ctx = current()
        if ctx is not None:
            ctx.progress(self.current, self.total, preview, self.node_id)

    def update(self, steps: int = 1) -> None:
        self.update_absolute(self.current + steps, self.total)


def encode_preview(image_format: str, image, max_size: int | None = 512) -> bytes:
    """A preview frame payload: 4-byte big-endian format code (1 JPEG, 2 PNG), then the encoded image."""
    if max_size:
        image = image.copy()
        image.thumbnail((max_size, max_size))
    buffer = io.BytesIO()
    if image_format.upper() == "PNG":
        code = events.FORMAT_PNG
        image.save(buffer, format="PNG")
    else:
        code = events.FORMAT_JPEG
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return struct.pack(">I", code) + buffer.getvalue()
