"""`comfy_api.latest._input`: the types of values V3 nodes take (`Input` in `comfy_api.latest`)."""
from __future__ import annotations

import abc
from typing import TypedDict

import torch

from ._util import VideoCodec, VideoComponents, VideoContainer

ImageInput = torch.Tensor  # [batch, height, width, channels]
MaskInput = torch.Tensor  # [batch, height, width]


class AudioInput(TypedDict):
    waveform: torch.Tensor  # [batch, channels, samples]
    sample_rate: int


class LatentInput(TypedDict, total=False):
    samples: torch.Tensor
    noise_mask: torch.Tensor | None
    batch_index: list[int] | None


class VideoInput(abc.ABC):
    """A VIDEO value: frames, frame rate and optional audio."""

    @abc.abstractmethod
    def get_components(self) -> VideoComponents:
        ...

    @abc.abstractmethod
    def save_to(self, path, format: VideoContainer = VideoContainer.AUTO, codec: VideoCodec = VideoCodec.AUTO,
                metadata: dict | None = None):
        ...

    def get_dimensions(self) -> tuple[int, int]:
        """(width, height)."""
        images = self.get_components().images
        return images.shape[2], images.shape[1]

    def get_duration(self) -> float:
        components = self.get_components()
        return float(components.images.shape[0] / components.frame_rate)
