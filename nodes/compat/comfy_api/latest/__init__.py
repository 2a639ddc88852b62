"""`comfy_api.latest`: ComfyUI's V3 node API (`io` node schemas, `ui` outputs, ComfyExtension, which a pack's
`comfy_entrypoint()` returns) and what a node may ask of the running prompt, as coroutines (ComfyAPI) or plain
calls (ComfyAPISync)."""
from __future__ import annotations

import abc

import numpy as np
import torch
from PIL import Image

from engine import context

from . import _io as io
from . import _ui as ui  # noqa: F401 (re-exported)
from ._input import AudioInput, ImageInput, LatentInput, MaskInput, VideoInput
from ._input_impl import VideoFromComponents, VideoFromFile
from ._util import VideoCodec, VideoComponents, VideoContainer

PREVIEW_MAX_SIZE = 512


def _preview(image, ignore_size_limit: bool):
    if image is None:
        return None
    if isinstance(image, torch.Tensor):
        frame = image[0] if image.ndim == 4 else image
        image = Image.fromarray((frame.detach().cpu().float().clamp(0, 1).numpy() * 255).astype(np.uint8))
    return (image.format or "JPEG", image, None if ignore_size_limit else PREVIEW_MAX_SIZE)


def _set_progress(value: float, max_value: float, node_id: str | None, preview_image, ignore_size_limit: bool):
    ctx = context.current()
    if ctx is None:
        raise ValueError("set_progress needs a node_id outside a running node" if node_id is None
                         else "set_progress was called outside a running prompt")
    ctx.progress(value, max_value, _preview(preview_image, ignore_size_limit), node_id)


class ComfyAPI:
    VERSION = "latest"
    STABLE = False

    class Execution:
        async def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                               preview_image=None, ignore_size_limit: bool = False) -> None:
            """Move the progress bar of the running node (or of `node_id`), with an optional preview image."""
            _set_progress(value, max_value, node_id, preview_image, ignore_size_limit)

    def __init__(self):
        self.execution = self.Execution()


class ComfyAPISync(ComfyAPI):
    class Execution:
        def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                         preview_image=None, ignore_size_limit: bool = False) -> None:
            _set_progress(value, max_value, node_id, preview_image, ignore_size_limit)


ComfyAPI_latest = ComfyAPI


class ComfyExtension(abc.ABC):
    """What a V3 pack's `comfy_entrypoint()` returns: its node classes, and a hook run when it loads."""

    async def on_load(self) -> None:
        """Set up what the pack's nodes share; runs once, before get_node_list."""

    @abc.abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        ...


class Input:
    Image = ImageInput
    Audio = AudioInput
    Mask = MaskInput
    Latent = LatentInput
    Video = VideoInput


class InputImpl:
    VideoFromFile = VideoFromFile
    VideoFromComponents = VideoFromComponents


class Types:
    VideoCodec = VideoCodec
    VideoContainer = VideoContainer
    VideoComponents = VideoComponents


comfy_io = io  # the name packs written for ComfyUI 0.3.4x import
