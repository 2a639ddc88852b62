"""Prompt text -> encoder windows (77 tokens for CLIP) of (token or embedding vector, weight), as ComfyUI."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .clip_tokenizer import ClipTokenizer
from .profiles import ClipProfile
from .prompt_weights import parse_prompt_weights
from .t5_tokenizer import T5Tokenizer

log = logging.getLogger(__name__)

EMBEDDING_PREFIX = "embedding:"
# Runs of at least this many tokens may be cut at a window boundary; shorter runs move whole to the next window.
SPLITTABLE_LENGTH = 8

Token = int | torch.Tensor
Tokenizer = ClipTokenizer | T5Tokenizer  # what matters: ``encode(text)`` gives ids without start/end tokens
EmbeddingLookup = Callable[[str], torch.Tensor | None]


@dataclass
class Chunk:
    """One encoder window: token ids or 1-D textual-inversion vectors, each with its weight."""

    tokens: list[Token]
    weights: list[float]

    def __len__(self) -> int:
        return len(self.tokens)


def split_embedding_words(text: str) -> list[str]:
    """Cut text before each ``embedding:`` that follows a space or newline (that separator is dropped)."""
    pieces = re.split(rf"[ \n]{EMBEDDING_PREFIX}", text)
    words = pieces[:1] + [EMBEDDING_PREFIX + piece for piece in pieces[1:]]
    return [word for word in words if word]


def find_embedding(name: str, lookup: EmbeddingLookup) -> tuple[torch.Tensor | None, str]:
    """Vectors named by the first word of ``name`` and the text left after it.

    Like ComfyUI, a name with trailing commas ("name,") is retried without them and the commas go back to the text.
    """
    words = name.split()
    if not words:
        return None, ""
    first, leftover = words[0], " ".join(words[1:])
    vectors = lookup(first)
    if vectors is None:
        stripped = first.strip(",")
        if len(stripped) < len(first):
            return (lookup(stripped) if stripped else None), f"{first[len(stripped):]} {leftover}"
    return vectors, leftover


def token_groups(
    text: str,
    tokenizer: Tokenizer,
    lookup_embedding: EmbeddingLookup | None = None,
    parse_weights: bool = True,
) -> list[list[tuple[Token, float]]]:
    """Weighted runs of the prompt as groups of (token, weight); each embedding is a group of its own."""
    groups: list[list[tuple[Token, float]]] = []
    for run in parse_prompt_weights(text, parse_weights):
        for word in split_embedding_words(run.text):
            if word.startswith(EMBEDDING_PREFIX) and lookup_embedding is not None:
                name = word[len(EMBEDDING_PREFIX) :].strip("\n")
                vectors, word = find_embedding(name, lookup_embedding)
                if vectors is None:
                    log.warning("embedding:%s does not exist, ignoring", name)
                else:
                    groups.append([(row, run.weight) for row in vectors.reshape(-1, vectors.shape[-1])])
                if not word:
                    continue
            groups.append([(token, run.weight) for token in tokenizer.encode(word)])
    return groups


def pack_chunks(groups: list[list[tuple[Token, float]]], profile: ClipProfile) -> list[Chunk]:
    """Fill windows of ``[start,] content..., end, pad...``; a short group that does not fit starts a new window.

    Without a ``max_length`` everything goes into one window, padded to ``min_length``.
    """
    start = [(profile.start_id, 1.0)] if profile.start_id is not None else []
    end, pad = (profile.end_id, 1.0), (profile.pad_id, 1.0)
    room = profile.max_length - 1 if profile.max_length else math.inf  # leave space for the end token
    windows = []
    window = list(start)
    for group in groups:
        splittable = len(group) >= SPLITTABLE_LENGTH
        while len(window) + len(group) > room:
            space = room - len(window)
            if splittable:
                window += group[:space] + [end]
                group = group[space:]
            else:
                window += [end] + [pad] * space
            windows.append(window)
            window = list(start)
        window += group
    window.append(end)
    window += [pad] * (max(profile.max_length or 0, profile.min_length) - len(window))
    windows.append(window)
    return [Chunk([token for token, _ in w], [weight for _, weight in w]) for w in windows]


def tokenize_prompt(
    text: str,
    profile: ClipProfile,
    lookup_embedding: EmbeddingLookup | None = None,
    parse_weights: bool = True,
    tokenizer: Tokenizer | None = None,
) -> list[Chunk]:
    """ComfyUI's ``tokenize_with_weights`` for one text encoder (``tokenizer`` defaults to the profile's).

    ``lookup_embedding(name)`` returns textual-inversion vectors ``[n, dim]`` (or ``[dim]``) or None when unknown;
    without it, ``embedding:name`` is tokenized as plain text (ComfyUI with no embedding folder).
    """
    groups = token_groups(text, tokenizer or profile.tokenizer(), lookup_embedding, parse_weights)
    return pack_chunks(groups, profile)
