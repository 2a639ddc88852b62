"""GLIGEN text boxes: loading GLIGEN files, and the grounding they add to a UNet while it samples.

A GLIGEN file holds a position net (``position_net.*``: a box's text feature and the Fourier features of its
corners -> one grounding token) and one gated self-attention "fuser" per spatial transformer of the UNet it was
trained with (``input_blocks.N.1.transformer_blocks.0.fuser.*``, then the middle and output blocks). In every
transformer block, right after self-attention, the fuser of its spatial transformer attends over the hidden states
and the grounding tokens together and adds the result, gated by tanh(alpha) (ComfyUI's "middle_patch").

The networks are diffusers' GLIGENTextBoundingboxProjection and GatedSelfAttentionDense: their parameters carry the
file's names and their math is ComfyUI's. The UNet is not rebuilt: `grounding_kwargs` gives each of its transformer
blocks a parameter-free `fuser` stand-in, once, which runs the fuser that the call's ``cross_attention_kwargs``
bring along; calls without grounding never touch it, so clones sharing the UNet are unaffected.

CONDITIONING options keep ComfyUI's representation: ``"gligen": ("position", Gligen, [box, ...])`` with each box
``(pooled text feature [1, dim], height, width, y, x)`` in latent pixels.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Mapping, Sequence

import torch
from diffusers.models.attention import GatedSelfAttentionDense
from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

from .detect import CheckpointError
from .load import CastingReader, assemble, open_checkpoint

MAX_OBJECTS = 30  # grounding tokens per call; unused ones hold the learnt null features
FOURIER_FREQUENCIES = 8  # per box coordinate, as the position nets were trained
POSITION_PREFIX = "position_net."
# ComfyUI gives the fusers of SD1 GLIGENs (768-wide text tokens) 8 heads, every other one 64-wide heads.
SD1_TOKEN_WIDTH = 768
SD1_HEADS = 8
HEAD_WIDTH = 64

_SECTIONS = ("input_blocks", "middle_block", "output_blocks")
_FUSER_KEY = re.compile(r"(?:^|\.)(input_blocks|middle_block|output_blocks)\.(\d+)\.(?:.*\.)?fuser\.")


def unsupported(name: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{name}: not a supported GLIGEN model ({reason})")


def fuser_heads(token_width: int, inner_width: int) -> int:
    """Attention heads of a fuser whose grounding tokens are `token_width` wide (64-wide heads are at least one)."""
    if token_width == SD1_TOKEN_WIDTH:
        return SD1_HEADS
    return max(1, inner_width // HEAD_WIDTH)


@dataclasses.dataclass(frozen=True)
class FuserLayout:
    width: int  # the spatial transformer's channels
    token_width: int  # the grounding tokens' width (the position net's output)
    inner_width: int  # attention heads x head width

    @property
    def heads(self) -> int:
        return fuser_heads(self.token_width, self.inner_width)


def fuser_prefixes(keys: Iterable[str], name: str = "GLIGEN") -> list[str]:
    """Where each fuser's keys start (up to ``fuser.``), in the UNet's forward order: input, middle, output."""
    found: dict[str, tuple[int, int]] = {}
    for key in keys:
        match = _FUSER_KEY.search(key)
        if match:
            found[key[:match.end()]] = (_SECTIONS.index(match[1]), int(match[2]))
    if len(set(found.values())) != len(found):  # ComfyUI runs one fuser per spatial transformer
        raise unsupported(name, "more than one fuser in a spatial transformer")
    return sorted(found, key=found.__getitem__)


class Gligen(torch.nn.Module):
    """GLIGEN values: the position net (float32: ComfyUI computes it in the boxes' precision) and one fuser per
    spatial transformer of the UNet, in forward order."""

    def __init__(self, feature_width: int, token_width: int, fusers: Sequence[FuserLayout]):
        super().__init__()
        self.position_net = GLIGENTextBoundingboxProjection(feature_width, token_width,
                                                            fourier_freqs=FOURIER_FREQUENCIES)
        self.fusers = torch.nn.ModuleList(
            GatedSelfAttentionDense(f.width, f.token_width, f.heads, f.inner_width // f.heads) for f in fusers)

    @property
    def feature_width(self) -> int:
        return self.position_net.positive_len

    def tokens(self, boxes: Sequence[tuple], latent_shape: Sequence[int]) -> torch.Tensor:
        """Grounding tokens [batch, MAX_OBJECTS, width] for `boxes` on latents of `latent_shape` (B, C, H, W)."""
        batch, _, height, width = latent_shape
        corners, mask, features = pack_boxes(boxes, height, width, self.feature_width)
        device = self.position_net.null_position_feature.device
        tokens = self.position_net(corners[None].to(device), mask[None].to(device), features[None].to(device))
        return tokens.expand(batch, -1, -1)

    def unet_kwargs(self, unet, boxes: Sequence[tuple], x: torch.Tensor) -> dict:
        """Keyword arguments that make `unet` ground `boxes` on the latents `x` (slots installed on first use)."""
        transformers = spatial_transformers(unet)
        if len(transformers) != len(self.fusers):
            raise ValueError(f"this GLIGEN model has {len(self.fusers)} fusers but the model has "
                             f"{len(transformers)} spatial transformers: it was made for another model")
        _install_slots(unet, transformers)
        if self.position_net.null_position_feature.device != x.device:  # loaded off the compute device
            self.to(x.device)
        grounding = Grounding(self.fusers, self.tokens(boxes, x.shape))
        return {"cross_attention_kwargs": {"gligen": {"grounding": grounding}}}


def pack_boxes(boxes: Sequence[tuple], height: int, width: int, feature_width: int):
    """(corners [MAX_OBJECTS, 4] as x1 y1 x2 y2 fractions, mask [MAX_OBJECTS], features [MAX_OBJECTS, width]) for
    ComfyUI boxes (pooled, h, w, y, x) on a `height` x `width` latent; unused rows are zero and masked out."""
    if len(boxes) > MAX_OBJECTS:
        raise ValueError(f"GLIGEN grounds at most {MAX_OBJECTS} boxes, got {len(boxes)}")
    corners = torch.zeros(MAX_OBJECTS, 4)
    mask = torch.zeros(MAX_OBJECTS)
    features = torch.zeros(MAX_OBJECTS, feature_width)
    for row, (pooled, h, w, y, x) in enumerate(boxes):
        corners[row] = torch.tensor((x / width, y / height, (x + w) / width, (y + h) / height))
        mask[row] = 1.0
        features[row] = pooled.detach().reshape(-1).float().cpu()
    return corners, mask, features


@dataclasses.dataclass(frozen=True)
class Grounding:
    """What one UNet call carries to its transformer blocks: the fusers and the tokens they mix in."""
    fusers: torch.nn.ModuleList
    tokens: torch.Tensor

    def fuse(self, index: int, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fusers[index](hidden_states, self.tokens.to(hidden_states.dtype))


class _FuserSlot:
    """A transformer block's ``fuser``: runs the fuser of spatial transformer `index` from the call's Grounding."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, hidden_states: torch.Tensor, grounding: Grounding) -> torch.Tensor:
        return grounding.fuse(self.index, hidden_states)


def _pass_grounding(grounding: Grounding) -> Grounding:
    """The UNet's ``position_net``: the tokens are made before the call, so it only hands them on."""
    return grounding


def spatial_transformers(unet) -> list:
    """The UNet's spatial transformers in forward order (ComfyUI's transformer_index)."""
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    return [t for block in blocks if block is not None for t in getattr(block, "attentions", None) or ()]


def _install_slots(unet, transformers: list) -> None:
    if getattr(unet, "position_net", None) is _pass_grounding:
        return
    for index, transformer in enumerate(transformers):
        for block in transformer.transformer_blocks:
            block.fuser = _FuserSlot(index)
    unet.position_net = _pass_grounding


def grounding_kwargs(entry: tuple, unet, x: torch.Tensor) -> dict:
    """UNet keyword arguments for a cond's "gligen" entry on the latents `x`: ("position", Gligen, boxes) grounds
    the boxes; any other kind grounds none (every token null), as ComfyUI's empty patch does."""
    boxes = entry[2] if entry[0] == "position" else ()
    return entry[1].unet_kwargs(unet, boxes, x)


# -- loading ---------------------------------------------------------------------------------------------------


def _state_dict(tensors: Mapping[str, torch.Tensor], prefixes: list[str]) -> dict[str, torch.Tensor]:
    state = {k: tensors[k] for k in tensors if k.startswith(POSITION_PREFIX)}
    for index, prefix in enumerate(prefixes):
        state.update({f"fusers.{index}.{k[len(prefix):]}": tensors[k] for k in tensors if k.startswith(prefix)})
    return state


def load_gligen_file(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype) -> Gligen:
    """A GLIGEN text-box model file: fusers in `dtype`, the position net in float32."""
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        shapes, name = file.shapes, file.name
        prefixes = fuser_prefixes(shapes, name)
        if POSITION_PREFIX + "null_positive_feature" not in shapes or not prefixes:
            raise unsupported(name, "no 'position_net' or no 'fuser' keys")
        try:
            layouts = [FuserLayout(width=shapes[p + "linear.weight"][0], token_width=shapes[p + "linear.weight"][1],
                                   inner_width=shapes[p + "attn.to_q.weight"][0]) for p in prefixes]
            feature_width = shapes[POSITION_PREFIX + "null_positive_feature"][0]
            token_width = shapes[POSITION_PREFIX + "linears.4.weight"][0]
        except KeyError as exc:
            raise unsupported(name, f"incomplete, missing {exc}") from None
        tensors = CastingReader(shapes, file.read, device, dtype)
        gligen = assemble(lambda: Gligen(feature_width, token_width, layouts),
                           lambda _: _state_dict(tensors, prefixes), "GLIGEN", name)
    gligen.position_net.float()
    return gligen
