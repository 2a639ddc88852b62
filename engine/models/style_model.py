"""STYLE_MODEL: networks that turn an image encoder's hidden states into extra text tokens - TencentARC's T2I style
adapter (CLIP vision, SD1) and FLUX.1 Redux (SigLIP, FLUX's T5 sequence).

The style adapter appends ``tokens`` learned queries to the image's hidden states, runs them through a few pre-norm
residual attention blocks (OpenCLIP's, with quick-GELU MLPs), and projects the queries' final states to the UNet's
cross-attention width. Widths, depth and token count are read off the file's shapes; the head count is not in the
shapes, and ComfyUI uses 8 for every style adapter. Files are keyed as the original release
(``style_embedding``, ``transformer_layes.N.*`` - sic -, ``ln_pre``, ``ln_post``, ``proj``).

Redux is two linear layers with a SiLU between: ``redux_up`` (SigLIP width -> 3x the T5 width) and ``redux_down``
(-> the T5 width), one token per SigLIP patch. ComfyUI fixes 1152 -> 4096; here the widths come from the shapes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from .detect import CheckpointError, count_indices
from .load import CastingReader, assemble, open_checkpoint

STYLE_HEADS = 8
LAYER = "transformer_layes.{}."
REDUX_KEY = "redux_down.weight"  # what tells a Redux file, as in ComfyUI


@dataclass(frozen=True)
class StyleAdapterSpec:
    width: int  # of the CLIP vision hidden states it reads
    context_dim: int  # of the tokens it produces (the UNet's cross-attention width)
    layers: int
    tokens: int
    heads: int = STYLE_HEADS


def unsupported(name: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{name}: not a supported style model ({reason})")


def detect_style_adapter(shapes: Mapping[str, Sequence[int]]) -> StyleAdapterSpec | None:
    """The T2I style adapter in ``{key: shape}``, or None when the keys are not one (KeyError when incomplete)."""
    if "style_embedding" not in shapes:
        return None
    _, tokens, width = shapes["style_embedding"]
    return StyleAdapterSpec(width=width, context_dim=shapes["proj"][1], layers=count_indices(shapes, LAYER),
                            tokens=tokens)


@dataclass(frozen=True)
class ReduxSpec:
    width: int  # of the SigLIP hidden states it reads
    hidden: int  # between the two layers
    context_dim: int  # of the tokens it produces (FLUX's T5 width)


def detect_redux(shapes: Mapping[str, Sequence[int]]) -> ReduxSpec | None:
    """The Redux image encoder in ``{key: shape}``, or None when the keys are not one (KeyError when incomplete)."""
    if REDUX_KEY not in shapes:
        return None
    hidden, width = shapes["redux_up.weight"]
    return ReduxSpec(width=width, hidden=hidden, context_dim=shapes[REDUX_KEY][0])


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class _Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(quick_gelu(self.c_fc(x)))


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = _Mlp(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class StyleAdapter(nn.Module):
    def __init__(self, spec: StyleAdapterSpec):
        super().__init__()
        self.spec = spec
        self.style_embedding = nn.Parameter(torch.empty(1, spec.tokens, spec.width))
        self.ln_pre = nn.LayerNorm(spec.width)
        self.transformer_layes = nn.Sequential(*(_ResidualBlock(spec.width, spec.heads) for _ in range(spec.layers)))
        self.ln_post = nn.LayerNorm(spec.width)
        self.proj = nn.Parameter(torch.empty(spec.width, spec.context_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, T, width] CLIP vision hidden states -> [B, tokens, context_dim] style tokens."""
        queries = self.style_embedding.expand(hidden.shape[0], -1, -1)
        x = self.transformer_layes(self.ln_pre(torch.cat([hidden, queries], dim=1)))
        return self.ln_post(x[:, -self.spec.tokens:]) @ self.proj


class ReduxImageEncoder(nn.Module):
    def __init__(self, spec: ReduxSpec):
        super().__init__()
        self.redux_up = nn.Linear(spec.width, spec.hidden)
        self.redux_down = nn.Linear(spec.hidden, spec.context_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, T, width] SigLIP hidden states -> [B, T, context_dim] tokens."""
        return self.redux_down(nn.functional.silu(self.redux_up(hidden)))


@dataclass
class StyleModel:
    """STYLE_MODEL values: the network (StyleAdapter or ReduxImageEncoder) and the file it came from."""
    adapter: StyleAdapter | ReduxImageEncoder
    name: str = ""

    def get_cond(self, clip_vision_output) -> torch.Tensor:
        """Style tokens [B, tokens, context_dim] for a CLIP_VISION_OUTPUT (read from its last hidden state, as
        ComfyUI does), on the network's device, in float32."""
        weight = next(self.adapter.parameters())
        hidden = clip_vision_output.last_hidden_state.to(device=weight.device, dtype=weight.dtype)
        return self.adapter(hidden)


def load_style_model_file(path: str | os.PathLike, device: torch.device | str) -> StyleModel:
    """A style model file (StyleModelLoader), in float32 as ComfyUI keeps it, on ``device``.

    CheckpointError when the file is neither a T2I style adapter nor a Redux image encoder."""
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        try:
            redux = detect_redux(file.shapes)
            adapter = None if redux else detect_style_adapter(file.shapes)
        except (KeyError, ValueError) as exc:
            kind = "Redux image encoder" if REDUX_KEY in file.shapes else "T2I style adapter"
            raise unsupported(file.name, f"incomplete {kind}, missing {exc}") from None
        if redux:
            factory, what = (lambda: ReduxImageEncoder(redux)), "Redux image encoder"
        elif adapter:
            factory, what = (lambda: StyleAdapter(adapter)), "style adapter"
        else:
            raise unsupported(file.name, f"no 'style_embedding' or '{REDUX_KEY}' key")
        tensors = CastingReader(file.shapes, file.read, device, torch.float32)
        network = assemble(factory, lambda _: dict(tensors), what, file.name)
    return StyleModel(network, name=file.name)
