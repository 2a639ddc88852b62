"""Text conditioning as ComfyUI computes it: CLIP / T5 tokenizers, prompt weights, chunking and weighted encoding."""

from .clip_tokenizer import END_ID, START_ID, ClipTokenizer, clip_tokenizer
from .encode import Conditioning, WindowEncoder, encode_chunks, encode_prompt, join_encoders
from .hf_encoder import HFClipEncoder, choose_layer
from .profiles import SD1_CLIP_L, SD2_CLIP_H, SD3_CLIP_L, SD3_T5_XXL, SDXL_CLIP_G, SDXL_CLIP_L, T5_XXL, ClipProfile
from .prompt_tokens import Chunk, EmbeddingLookup, tokenize_prompt
from .prompt_weights import WeightedText, parse_prompt_weights
from .t5_encoder import T5Encoder
from .t5_tokenizer import t5_tokenizer

__all__ = [
    "END_ID",
    "START_ID",
    "SD1_CLIP_L",
    "SD2_CLIP_H",
    "SD3_CLIP_L",
    "SD3_T5_XXL",
    "SDXL_CLIP_G",
    "SDXL_CLIP_L",
    "T5_XXL",
    "Chunk",
    "ClipProfile",
    "ClipTokenizer",
    "Conditioning",
    "EmbeddingLookup",
    "HFClipEncoder",
    "T5Encoder",
    "WeightedText",
    "WindowEncoder",
    "choose_layer",
    "clip_tokenizer",
    "encode_chunks",
    "encode_prompt",
    "join_encoders",
    "parse_prompt_weights",
    "t5_tokenizer",
    "tokenize_prompt",
]
