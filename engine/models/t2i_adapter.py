"""T2I-Adapter networks (TencentARC's full, light and SDXL variants), keyed as their original single files.

An adapter turns a hint image into one feature map per level. ComfyUI adds each to the output of a fixed LDM
input block of the UNet (the SDXL variant's last one after the middle block); `AdapterLayout.slots` says which.
The layout is read off the file's shapes, as ComfyUI reads it: full adapters have two blocks per level, and a
first-conv width of 256 or 768 (1 or 3 hint channels unshuffled by 16) marks the SDXL variant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .detect import count_indices

FULL_BLOCKS_PER_LEVEL = 2
XL_IN_CHANNELS = (256, 768)
# LDM input block each level's feature is added to; None: after the middle block.
XL_SLOTS = (3, 5, 8, None)


@dataclass(frozen=True)
class AdapterLayout:
    kind: str  # "full" or "light"
    in_channels: int  # of the first layer: hint channels times unshuffle squared
    channels: tuple[int, ...]  # feature width per level
    blocks_per_level: int
    kernel_size: int = 1  # of the full adapter's in_conv / block2
    conv_down: bool = False  # strided convolution instead of average pooling between levels
    xl: bool = False

    @property
    def unshuffle(self) -> int:
        return 16 if self.xl else 8

    @property
    def hint_channels(self) -> int:
        return self.in_channels // self.unshuffle ** 2

    @property
    def slots(self) -> tuple[int | None, ...]:
        if self.xl:
            return XL_SLOTS[:len(self.channels)]
        return tuple(3 * level + 2 for level in range(len(self.channels)))  # last res block of each SD level


def detect_adapter(shapes: Mapping[str, Sequence[int]]) -> AdapterLayout | None:
    """The layout of an original-keyed T2I-Adapter, or None when the keys are not one."""
    if "body.0.in_conv.weight" in shapes:
        levels = count_indices(shapes, "body.{}.out_conv.")
        return AdapterLayout(
            kind="light", in_channels=shapes["body.0.in_conv.weight"][1],
            channels=tuple(shapes[f"body.{i}.out_conv.weight"][0] for i in range(levels)),
            blocks_per_level=count_indices(shapes, "body.0.body.{}."))
    if "conv_in.weight" in shapes and "body.0.block2.weight" in shapes:
        blocks = count_indices(shapes, "body.{}.block1.")
        in_channels = shapes["conv_in.weight"][1]
        return AdapterLayout(
            kind="full", in_channels=in_channels,
            channels=tuple(shapes[f"body.{i}.block1.weight"][0] for i in range(0, blocks, FULL_BLOCKS_PER_LEVEL)),
            blocks_per_level=FULL_BLOCKS_PER_LEVEL, kernel_size=shapes["body.0.block2.weight"][2],
            conv_down=any(k.endswith("down_opt.op.weight") for k in shapes), xl=in_channels in XL_IN_CHANNELS)
    return None


def diffusers_adapter_names(keys) -> dict[str, str] | None:
    """{original name: diffusers name} for a diffusers-saved full adapter (``adapter.body.<level>.resnets.<j>``),
    or None when the keys are not one."""
    keys = list(keys)
    if "adapter.body.0.resnets.0.block1.weight" not in keys:
        return None
    names = {}
    for key in keys:
        new = re.sub(r"^adapter\.body\.(\d+)\.resnets\.(\d+)\.",
                     lambda m: f"body.{int(m.group(1)) * FULL_BLOCKS_PER_LEVEL + int(m.group(2))}.", key)
        new = re.sub(r"^adapter\.body\.(\d+)\.", lambda m: f"body.{int(m.group(1)) * FULL_BLOCKS_PER_LEVEL}.", new)
        names[new.removeprefix("adapter.")] = key
    return names


def _downsample(x: torch.Tensor) -> torch.Tensor:
    # Odd sizes are zero-padded on both sides (padding counted in the mean), as the original code does.
    return F.avg_pool2d(x, 2, 2, padding=(x.shape[2] % 2, x.shape[3] % 2))


class _StridedDown(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class _FullBlock(nn.Module):
    """conv, ReLU, conv with a residual; optionally halves the size and changes the width first."""

    def __init__(self, cin: int, cout: int, *, down: bool, kernel_size: int, conv_down: bool):
        super().__init__()
        self.down = down
        if down and conv_down:
            self.down_opt = _StridedDown(cin)
        self.in_conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2) if cin != cout else None
        self.block1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.block2 = nn.Conv2d(cout, cout, kernel_size, padding=kernel_size // 2)

    def forward(self, x):
        if self.down:
            x = self.down_opt(x) if hasattr(self, "down_opt") else _downsample(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))


class _LightBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.block2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.block2(F.relu(self.block1(x)))


class _LightLevel(nn.Module):
    """1x1 conv into a quarter of the width, residual blocks, 1x1 conv out."""

    def __init__(self, cin: int, cout: int, blocks: int, *, down: bool):
        super().__init__()
        self.down = down
        self.in_conv = nn.Conv2d(cin, cout // 4, 1)
        self.body = nn.Sequential(*(_LightBlock(cout // 4) for _ in range(blocks)))
        self.out_conv = nn.Conv2d(cout // 4, cout, 1)

    def forward(self, x):
        if self.down:
            x = _downsample(x)
        return self.out_conv(self.body(self.in_conv(x)))


class Adapter(nn.Module):
    """hint [B, C, H, W] (H, W multiples of the unshuffle factor) -> one feature map per level."""

    def __init__(self, layout: AdapterLayout):
        super().__init__()
        self.layout = layout
        channels = layout.channels
        if layout.kind == "light":
            self.body = nn.ModuleList(
                _LightLevel(channels[i - 1] if i else layout.in_channels, c, layout.blocks_per_level, down=i > 0)
                for i, c in enumerate(channels))
            return
        self.conv_in = nn.Conv2d(layout.in_channels, channels[0], 3, padding=1)
        blocks = []
        for level, width in enumerate(channels):
            for j in range(layout.blocks_per_level):
                # The first block of a level takes the previous width; SDXL's first levels keep the size.
                widens = j == 0 and level > 0 and (not layout.xl or level < 3)
                down = widens and (not layout.xl or level == 2)
                blocks.append(_FullBlock(channels[level - 1] if widens else width, width, down=down,
                                         kernel_size=layout.kernel_size, conv_down=layout.conv_down))
        self.body = nn.ModuleList(blocks)

    def forward(self, hint: torch.Tensor) -> list[torch.Tensor]:
        x = F.pixel_unshuffle(hint, self.layout.unshuffle)
        features = []
        if self.layout.kind == "light":
            for level in self.body:
                x = level(x)
                features.append(x)
            return features
        x = self.conv_in(x)
        per_level = self.layout.blocks_per_level
        for start in range(0, len(self.body), per_level):
            for block in self.body[start:start + per_level]:
                x = block(x)
            features.append(x)
        return features
