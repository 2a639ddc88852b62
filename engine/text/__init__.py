"""Text conditioning as ComfyUI computes it: CLIP tokenizer, prompt weights, chunking and weighted encoding."""

from .clip_tokenizer import END_ID, START_ID, ClipTokenizer, clip_tokenizer
from .encode import Conditioning, WindowEncoder, encode_chunks, encode_prompt, join_encoders
from .hf_encoder import HFClipEncoder, choose_layer
from .profiles import SD1_CLIP_L, SD2_CLIP_H, SDXL_CLIP_G, SDXL_CLIP_L, ClipProfile
from .prompt_tokens import Chunk, EmbeddingLookup, tokenize_prompt
from .prompt_weights import WeightedText, parse_prompt_weights

__all__ = [
    "END_ID",
    "START_ID",
    "SD1_CLIP_L",
    "SD2_CLIP_H",
    "SDXL_CLIP_G",
    "SDXL_CLIP_L",
    "Chunk",
    "ClipProfile",
    "ClipTokenizer",
    "Conditioning",
    "EmbeddingLookup",
    "HFClipEncoder",
    "WeightedText",
    "WindowEncoder",
    "choose_layer",
    "clip_tokenizer",
    "encode_chunks",
    "encode_prompt",
    "join_encoders",
    "parse_prompt_weights",
    "tokenize_prompt",
]
