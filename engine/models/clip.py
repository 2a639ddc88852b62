"""CLIP: the text encoder(s) of a checkpoint behind ComfyUI's tokenize / encode_from_tokens contract.

Flux's CLIP is CLIP-L (SD1's settings, pooled output unprojected) next to T5-XXL: the conditioning is T5's
sequence, the pooled output CLIP-L's. SD3's is any of CLIP-L, CLIP-G and T5-XXL (see join_sd3).
"""
from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import text
from . import embeddings

PROFILES = {
    "sd1": {"l": text.SD1_CLIP_L},
    "sd2": {"h": text.SD2_CLIP_H},
    "sdxl": {"l": text.SDXL_CLIP_L, "g": text.SDXL_CLIP_G},
    "sdxl_refiner": {"g": text.SDXL_CLIP_G},
    "flux": {"l": text.SD1_CLIP_L, "t5xxl": text.T5_XXL},
    "sd3": {"l": text.SD3_CLIP_L, "g": text.SDXL_CLIP_G, "t5xxl": text.SD3_T5_XXL},
}
# The released CLIP-L / CLIP-G widths, which SD3 fills with zeros for an encoder it lacks.
SD3_CLIP_WIDTHS = {"l": 768, "g": 1280}
# SD3's conditioning when there is nothing to encode: 77 zero tokens as wide as T5-XXL.
SD3_EMPTY_SHAPE = (1, 77, 4096)


class TextEncoder:
    """What CLIP outputs carry: {encoder name: transformers model}, a family, and the clip-skip setting."""

    def __init__(self, models: dict, family: str, *, embedding_roots=(), manager=None):
        self.models = models
        self.family = family
        # A family's tokenizer makes tokens for all its encoders, also those this CLIP lacks (as ComfyUI's do).
        self.profiles = PROFILES[family]
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

        def encode(name: str) -> text.Conditioning | None:
            if name not in self.models:
                return None
            model, profile = self.models[name], self.profiles[name]
            with self.manager.running(self) if self.manager else contextlib.nullcontext():
                if profile.name == "t5xxl":
                    encoder = text.T5Encoder(model, profile, layer_idx=self.layer_idx)
                else:
                    encoder = text.HFClipEncoder(model, profile, layer_idx=self.layer_idx,
                                                 projected_pooled=False if unprojected else None)
                return text.encode_chunks(tokens.get(name, []), encoder, profile)

        if self.family == "sd3":
            joined = join_sd3(tokens, encode)
        else:
            results = {name: encode(name) for name in tokens if name in self.models}
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


def join_sd3(tokens: dict[str, list], encode: Callable[[str], text.Conditioning | None]) -> text.Conditioning:
    """ComfyUI's SD3 conditioning from whichever of CLIP-L, CLIP-G and T5-XXL there are (`encode` gives None for a
    missing one).

    With CLIP tokens: CLIP-L and CLIP-G features side by side as SDXL joins them (CLIP-G alone behind CLIP-L's
    width of zeros), pooled = CLIP-L's ++ CLIP-G's (zeros for a missing one). T5's tokens follow, the CLIP part
    zero-padded to T5's width first (4096 for the released files, as ComfyUI pads it; a CLIP part without T5 keeps
    its width, the transformer pads it to its own). Without CLIP tokens pooled is zeros, without anything to encode
    the conditioning too.
    """
    clip_tokens = bool(tokens.get("l") or tokens.get("g"))
    l, g = (encode("l"), encode("g")) if clip_tokens else (None, None)
    t5 = encode("t5xxl")
    device = next((part.cond.device for part in (l, g, t5) if part is not None), None)
    if l is not None and g is not None:
        cond = text.join_encoders(l, g).cond
    elif g is not None:
        cond = F.pad(g.cond, (SD3_CLIP_WIDTHS["l"], 0))
    else:
        cond = l.cond if l is not None else None
    if t5 is not None:
        if cond is None:
            cond = t5.cond
        else:
            room = t5.cond.shape[-1] - cond.shape[-1]
            if room < 0:
                raise ValueError(f"SD3's CLIP features ({cond.shape[-1]} wide) are wider than its T5-XXL "
                                 f"({t5.cond.shape[-1]})")
            cond = torch.cat([F.pad(cond, (0, room)), t5.cond], dim=1)
    if cond is None:
        cond = torch.zeros(SD3_EMPTY_SHAPE, device=device)
    # Without CLIP tokens the pooled part is all zeros, the same as for two missing encoders.
    pooled = torch.cat([part.pooled if part is not None else torch.zeros(1, width, device=device)
                        for part, width in ((l, SD3_CLIP_WIDTHS["l"]), (g, SD3_CLIP_WIDTHS["g"]))], dim=-1)
    return text.Conditioning(cond, pooled)


def pad_token_lists(tokens_l: list, tokens_g: list, empty: dict) -> None:
    """Make SDXL's two chunk lists equally long with empty chunks, so their features line up token by token."""
    while len(tokens_l) < len(tokens_g):
        tokens_l.extend(empty["l"])
    while len(tokens_g) < len(tokens_l):
        tokens_g.extend(empty["g"])
