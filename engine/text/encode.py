"""Chunks -> ComfyUI conditioning: encode all windows in one batch, apply token weights, join windows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .profiles import ClipProfile
from .prompt_tokens import Chunk, EmbeddingLookup, Token, tokenize_prompt

# Maps a batch of windows (token ids and 1-D embedding vectors) to
# (hidden [batch, tokens, dim], pooled [batch, d] or None).
WindowEncoder = Callable[[list[list[Token]]], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class Conditioning:
    """cond: [1, tokens, dim] (77 per CLIP chunk); pooled: [1, d] from the first chunk, or None."""

    cond: torch.Tensor
    pooled: torch.Tensor | None


def empty_window(profile: ClipProfile, length: int) -> list[int]:
    """The empty prompt's window, the reference point that weights scale away from."""
    window = [profile.start_id, profile.end_id] if profile.start_id is not None else [profile.end_id]
    return window + [profile.pad_id] * (length - len(window))


def apply_weights(z: torch.Tensor, z_empty: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """``(z - z_empty) * w + z_empty`` per token, leaving weight-1.0 tokens bit-exact as ComfyUI does."""
    w = torch.tensor(weights, dtype=z.dtype, device=z.device).unsqueeze(-1)
    return torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)


def encode_chunks(chunks: list[Chunk], encoder: WindowEncoder, profile: ClipProfile) -> Conditioning:
    """ComfyUI's ``encode_token_weights``: the empty prompt is encoded alongside only when some weight != 1."""
    windows = [chunk.tokens for chunk in chunks]
    weighted = any(w != 1.0 for chunk in chunks for w in chunk.weights)
    if weighted or not windows:
        windows.append(empty_window(profile, max((len(w) for w in windows), default=0)))
    hidden, pooled = encoder(windows)
    first_pooled = pooled[:1] if pooled is not None else None
    if not chunks:
        return Conditioning(hidden[-1:], first_pooled)
    parts = []
    for k, chunk in enumerate(chunks):
        z = hidden[k]
        if weighted:
            z = apply_weights(z, hidden[-1], chunk.weights)
        parts.append(z)
    return Conditioning(torch.cat(parts, dim=0).unsqueeze(0), first_pooled)


def join_encoders(first: Conditioning, second: Conditioning) -> Conditioning:
    """SDXL: CLIP-L and bigG features side by side (cut to the shorter), pooled output from the second (bigG)."""
    length = min(first.cond.shape[1], second.cond.shape[1])
    cond = torch.cat([first.cond[:, :length], second.cond[:, :length]], dim=-1)
    return Conditioning(cond, second.pooled)


def encode_prompt(
    text: str,
    encoder: WindowEncoder,
    profile: ClipProfile,
    lookup_embedding: EmbeddingLookup | None = None,
) -> Conditioning:
    """CLIPTextEncode for one encoder: tokenize with ComfyUI's rules, then encode with weights."""
    return encode_chunks(tokenize_prompt(text, profile, lookup_embedding), encoder, profile)
