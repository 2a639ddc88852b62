"""`comfy_api.latest._util`: the video vocabulary nodes pass around (`Types` in `comfy_api.latest`)."""
from __future__ import annotations

import dataclasses
from enum import Enum
from fractions import Fraction
from typing import Any


class VideoCodec(str, Enum):
    AUTO = "auto"
    H264 = "h264"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]


class VideoContainer(str, Enum):
    AUTO = "auto"
    MP4 = "mp4"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def get_extension(cls, value) -> str:
        return "mp4" if cls(value) in (cls.MP4, cls.AUTO) else ""


@dataclasses.dataclass
class VideoComponents:
    images: Any  # IMAGE tensor, one frame per batch entry
    frame_rate: Fraction
    audio: dict | None = None
    metadata: dict | None = None
