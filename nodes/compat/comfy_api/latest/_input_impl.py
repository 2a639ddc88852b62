"""`comfy_api.latest._input_impl`: VIDEO values (`InputImpl` in `comfy_api.latest`). comfyd installs no video
codec library (ComfyUI uses PyAV), so a video can be carried from node to node but not decoded or encoded."""
from __future__ import annotations

import dataclasses

from ._input import VideoInput
from ._util import VideoCodec, VideoComponents, VideoContainer

_NO_CODECS = "comfyd cannot decode or encode video (ComfyUI does it with PyAV, which comfyd does not install)"


class VideoFromComponents(VideoInput):
    def __init__(self, components: VideoComponents):
        self.__components = components

    def get_components(self) -> VideoComponents:
        return dataclasses.replace(self.__components)  # a copy: the caller may change its fields

    def save_to(self, path, format: VideoContainer = VideoContainer.AUTO, codec: VideoCodec = VideoCodec.AUTO,
                metadata: dict | None = None):
        raise NotImplementedError(_NO_CODECS)


class VideoFromFile(VideoInput):
    """A video file (a path or a file-like object), kept as it is."""

    def __init__(self, file):
        self.__file = file

    def get_stream_source(self):
        if hasattr(self.__file, "seek"):
            self.__file.seek(0)
        return self.__file

    def get_components(self) -> VideoComponents:
        raise NotImplementedError(_NO_CODECS)

    def save_to(self, path, format: VideoContainer = VideoContainer.AUTO, codec: VideoCodec = VideoCodec.AUTO,
                metadata: dict | None = None):
        raise NotImplementedError(_NO_CODECS)
