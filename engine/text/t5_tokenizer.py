"""T5's SentencePiece (Unigram) tokenizer, from the vocabulary shipped in ``data/`` (no download).

``data/t5_tokenizer.json.gz`` is the Hugging Face ``tokenizer.json`` conversion of Google's T5 v1.1 SentencePiece
model (Apache-2.0, see data/LICENSE-T5.txt), the one ComfyUI's T5TokenizerFast reads. The ``tokenizers`` library
runs it exactly as that fast tokenizer does (normalizer, Metaspace pre-tokenizer, added special tokens).
"""
from __future__ import annotations

import functools
import gzip
from pathlib import Path

DATA = Path(__file__).with_name("data")
PAD_ID = 0  # <pad>
END_ID = 1  # </s>


class T5Tokenizer:
    """Text -> T5 token ids, without the ``</s>`` a tokenizer call appends."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids


@functools.cache
def t5_tokenizer() -> T5Tokenizer:
    """The shared tokenizer, read from the vendored file on first use."""
    from tokenizers import Tokenizer

    return T5Tokenizer(Tokenizer.from_str(gzip.decompress((DATA / "t5_tokenizer.json.gz").read_bytes()).decode()))
