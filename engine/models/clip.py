"""CLIP: the text encoder(s) of a checkpoint behind ComfyUI's tokenize / encode_from_tokens contract.

Flux's CLIP is CLIP-L (SD1's settings, pooled output unprojected) next to T5-XXL: the conditioning is T5's
sequence, the pooled output CLIP-L's.
"""
from __future__ import annotations

import contextlib
import copy
import functools

from .. import text
from . import embeddings

PROFILES = {
    "sd1": {"l": text.SD1_CLIP_L},
    "sd2": {"h": text.SD2_CLIP_H},
    "sdxl": {"l": text.SDXL_CLIP_L, "g": text.SDXL_CLIP_G},
    "sdxl_refiner": {"g": text.SDXL_CLIP_G},
    "flux": {"l": text.SD1_CLIP_L, "t5xxl": text.T5_XXL},
}


class TextEncoder:
    """What CLIP outputs carry: {encoder name: transformers model}, a family, and the clip-skip setting."""

    def __init__(self, models: dict, family: str, *, embedding_roots=(), manager=None):
        self.models = models
        self.family = family
        self.profiles = {name: PROFILES[family][name] for name in models}
        self.embedding_roots = list(embedding_roots)
        self.manager = manager
        self.layer_idx: int | None = None
        self.patches: list = []

    def clone(self) -> "TextEncoder":
        other = copy.copy(self)
        other.patches = list(self.patches)
        return other

    def clip_layer(self, layer_idx: int) -> None:
        """CLIPSetLastLayer: -1 is the last layer, -2 the penultimate, ..."""
        self.layer_idx = layer_idx

    def tokenize(self, prompt: str) -> dict[str, list]:
        return {name: text.tokenize_prompt(prompt, profile, functools.partial(self._embedding, profile))
                for name, profile in self.profiles.items()}

    def _embedding(self, profile, name: str):
        return embeddings.load_embedding(self.embedding_roots, name, profile.embedding_size, profile.embedding_key)

    def encode_from_tokens(self, tokens: dict[str, list], return_pooled: bool | str = False):
        """cond, or (cond, pooled) with `return_pooled`; "unprojected" gives the pooled output before the text
        projection (ComfyUI's option, used by GLIGEN)."""
        unprojected = return_pooled == "unprojected"
        results = {}
        for name, chunks in tokens.items():
            model = self.models[name]
            profile = self.profiles[name]
            with self.manager.running(self) if self.manager else contextlib.nullcontext():
                if profile is text.T5_XXL:
                    encoder = text.T5Encoder(model, profile, layer_idx=self.layer_idx)
                else:
                    encoder = text.HFClipEncoder(model, profile, layer_idx=self.layer_idx,
                                                 projected_pooled=False if unprojected else None)
                results[name] = text.encode_chunks(chunks, encoder, profile)
        if "l" in results and "g" in results:
            joined = text.join_encoders(results["l"], results["g"])
        elif "t5xxl" in results:
            joined = text.Conditioning(results["t5xxl"].cond, results["l"].pooled)
        else:
            joined = next(iter(results.values()))
        return (joined.cond, joined.pooled) if return_pooled else joined.cond

    def encode(self, prompt: str) -> list:
        """A CONDITIONING list for one prompt (CLIPTextEncode)."""
        cond, pooled = self.encode_from_tokens(self.tokenize(prompt), return_pooled=True)
        return [[cond, {"pooled_output": pooled}]]

    def empty_chunk(self, name: str):
        return text.tokenize_prompt("", self.profiles[name])


def pad_token_lists(tokens_l: list, tokens_g: list, empty: dict) -> None:
    """Make SDXL's two chunk lists equally long with empty chunks, so their features line up token by token."""
    while len(tokens_l) < len(tokens_g):
        tokens_l.extend(empty["l"])
    while len(tokens_g) < len(tokens_l):
        tokens_g.extend(empty["g"])
