"""The Qwen2/Qwen3 byte-level BPE tokenizer, from the vocabulary shipped in ``data/`` (no download).

``data/qwen2_vocab.json.gz`` and ``data/qwen2_merges.txt.gz`` are the Qwen2.5 tokenizer files (Apache-2.0, Qwen
team, Alibaba Cloud; see data/LICENSE-QWEN.txt); Qwen3 uses the same vocabulary. Z-Image's text encoder reads its
prompt wrapped in Qwen's chat template as one user turn, with the assistant turn opened.
"""
from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

DATA = Path(__file__).with_name("data")
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# The ids the vocabulary gives its control tokens (after the 151643 byte-level BPE entries).
SPECIAL_TOKENS = {ENDOFTEXT: 151643, IM_START: 151644, IM_END: 151645}
CHAT_TEMPLATE = IM_START + "user\n{}" + IM_END + "\n" + IM_START + "assistant\n"


@functools.cache
def qwen_tokenizer():
    from transformers import AddedToken, Qwen2Tokenizer

    vocab = json.loads(gzip.decompress((DATA / "qwen2_vocab.json.gz").read_bytes()))
    merges = [tuple(line.split(" ")) for line in
              gzip.decompress((DATA / "qwen2_merges.txt.gz").read_bytes()).decode("utf-8").splitlines()
              if line and not line.startswith("#version")]
    vocab.update(SPECIAL_TOKENS)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(token, special=True, normalized=False) for token in (IM_START, IM_END)]})
    return tokenizer


def chat_token_ids(prompt: str) -> list[int]:
    """Token ids of ``prompt`` as the user turn of Qwen's chat template, ready for the assistant's reply."""
    return qwen_tokenizer()(CHAT_TEMPLATE.format(prompt), add_special_tokens=False)["input_ids"]
