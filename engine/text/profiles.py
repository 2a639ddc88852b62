"""Per text-encoder settings that decide how ComfyUI tokenizes and reads out each CLIP (or T5) model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from . import t5_tokenizer
from .clip_tokenizer import END_ID, START_ID, clip_tokenizer


@dataclass(frozen=True)
class ClipProfile:
    """How one text encoder is fed and read.

    name: ComfyUI's key for the encoder's tokens ("l", "g", "h", "t5xxl").
    pad_id: padding after the end token (CLIP-L pads with the end token, OpenCLIP H/bigG with 0).
    layer_idx: default hidden layer to read (negative counts from the end); None reads the final output.
    norm_hidden: whether a hidden layer's output goes through the final layer norm.
    projected_pooled: whether the pooled output goes through the text projection (when the model has one).
    embedding_size / embedding_key: what a textual-inversion loader should pick for this encoder.
    start_id: the token opening each window, or None (T5 has none).
    max_length: window size, prompts longer than one window spread over several; None: one window of any length.
    min_length: the last window is padded to at least this many tokens (CLIP windows are always max_length).
    tokenizer: the shared text -> ids tokenizer for this encoder.
    """

    name: str
    pad_id: int
    layer_idx: int | None
    norm_hidden: bool
    projected_pooled: bool
    embedding_size: int
    embedding_key: str
    start_id: int | None = START_ID
    end_id: int = END_ID
    max_length: int | None = 77
    min_length: int = 0
    tokenizer: Callable = clip_tokenizer


SD1_CLIP_L = ClipProfile(
    "l", pad_id=END_ID, layer_idx=None, norm_hidden=True, projected_pooled=False,
    embedding_size=768, embedding_key="clip_l",
)
SD2_CLIP_H = ClipProfile(
    "h", pad_id=0, layer_idx=-2, norm_hidden=True, projected_pooled=True,
    embedding_size=1024, embedding_key="clip_h",
)
SDXL_CLIP_L = ClipProfile(
    "l", pad_id=END_ID, layer_idx=-2, norm_hidden=False, projected_pooled=True,
    embedding_size=768, embedding_key="clip_l",
)
# SD3 reads CLIP-L as SDXL does but keeps its pooled output unprojected.
SD3_CLIP_L = replace(SDXL_CLIP_L, projected_pooled=False)
# Also the SDXL refiner's only encoder.
SDXL_CLIP_G = ClipProfile(
    "g", pad_id=0, layer_idx=-2, norm_hidden=False, projected_pooled=True,
    embedding_size=1280, embedding_key="clip_g",
)
# Flux's T5-XXL: no start token, the end token then zeros up to 256 tokens, one window however long the prompt.
T5_XXL = ClipProfile(
    "t5xxl", pad_id=t5_tokenizer.PAD_ID, layer_idx=None, norm_hidden=True, projected_pooled=False,
    embedding_size=4096, embedding_key="t5xxl", start_id=None, end_id=t5_tokenizer.END_ID, max_length=None,
    min_length=256, tokenizer=t5_tokenizer.t5_tokenizer,
)
# SD3's T5-XXL: the same, padded to 77 tokens only.
SD3_T5_XXL = replace(T5_XXL, min_length=77)
