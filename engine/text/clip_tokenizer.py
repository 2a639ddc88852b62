"""CLIP's byte-level BPE tokenizer, built offline from the vendored OpenAI vocabulary file.

It reproduces the ids of transformers' Python ``CLIPTokenizer`` as ComfyUI runs it: ComfyUI does not install
``ftfy``, so that tokenizer cleans text the BERT "basic tokenizer" way (control characters dropped, CJK
ideographs split apart, NFC, lowercase) before applying CLIP's word regex and BPE merges.
"""

from __future__ import annotations

import functools
import gzip
import math
import unicodedata
from pathlib import Path

import regex

VOCAB_FILE = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"

START_TEXT = "<|startoftext|>"
END_TEXT = "<|endoftext|>"
START_ID = 49406
END_ID = 49407
SPECIAL_IDS = {START_TEXT: START_ID, END_TEXT: END_ID}

# CLIP keeps only the merges that fit a 49152-entry table, less the 256 byte symbols and the 2 specials.
MERGE_COUNT = 49152 - 256 - 2

_WORD_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)
_SPECIALS_PATTERN = r"(<\|startoftext\|>|<\|endoftext\|>)"

# CJK ideograph blocks that BERT-style cleaning surrounds with spaces.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def byte_symbols() -> dict[int, str]:
    """Map every byte to a printable character; printable Latin-1 bytes map to themselves."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def read_merges(path: Path = VOCAB_FILE) -> list[tuple[str, str]]:
    """The merge rules CLIP uses: lines 1..MERGE_COUNT of the vocabulary file (line 0 is a header)."""
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : 1 + MERGE_COUNT]]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id in CLIP's order: bytes, bytes ending a word, merged pairs, then the two specials."""
    symbols = list(byte_symbols().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + [START_TEXT, END_TEXT]
    return {token: index for index, token in enumerate(tokens)}


def _is_dropped(char: str) -> bool:
    # NUL, the replacement character and control/format characters, but not the three usual whitespaces.
    if char in "\t\n\r":
        return False
    return char in "\x00\ufffd" or unicodedata.category(char).startswith("C")


def _is_space(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def basic_clean(text: str) -> str:
    """Normalise text the way the ftfy-less transformers CLIP tokenizer does, words joined by one space."""
    chars = []
    for char in text:
        if _is_dropped(char):
            continue
        if _is_space(char):
            chars.append(" ")
        elif _is_cjk(char):
            chars.append(f" {char} ")
        else:
            chars.append(char)
    words = unicodedata.normalize("NFC", "".join(chars)).split()
    return " ".join(word.lower() for word in words)


class ClipTokenizer:
    """Text -> CLIP token ids (without start/end tokens)."""

    def __init__(self, merges: list[tuple[str, str]]):
        self.vocab = build_vocab(merges)
        self._ranks = {pair: rank for rank, pair in enumerate(merges)}
        self._bytes = byte_symbols()
        self._words = regex.compile(_WORD_PATTERN, regex.IGNORECASE)
        self._specials = regex.compile(_SPECIALS_PATTERN)
        self._cache: dict[str, list[int]] = {text: [id_] for text, id_ in SPECIAL_IDS.items()}

    def encode(self, text: str) -> list[int]:
        """Ids for ``text``; literal special-token strings become their ids, as in transformers."""
        ids: list[int] = []
        for piece in self._specials.split(text):
            if piece in SPECIAL_IDS:
                ids.append(SPECIAL_IDS[piece])
            elif piece:
                for word in self._words.findall(basic_clean(piece)):
                    ids.extend(self._word_ids(word))
        return ids

    def __call__(self, text: str) -> list[int]:
        """Ids framed by the start and end tokens, like a transformers tokenizer call."""
        return [START_ID, *self.encode(text), END_ID]

    def _word_ids(self, word: str) -> list[int]:
        if word not in self._cache:
            symbols = "".join(self._bytes[b] for b in word.encode("utf-8"))
            self._cache[word] = [self.vocab[part] for part in self._bpe(symbols)]
        return self._cache[word]

    def _bpe(self, symbols: str) -> list[str]:
        parts = [*symbols[:-1], symbols[-1] + "</w>"]
        while len(parts) > 1:
            rank, pair = min((self._ranks.get(pair, math.inf), pair) for pair in zip(parts, parts[1:]))
            if rank == math.inf:
                break
            parts = _merge_pair(parts, pair)
        return parts


def _merge_pair(parts: list[str], pair: tuple[str, str]) -> list[str]:
    """Join every non-overlapping occurrence of ``pair``, scanning left to right."""
    merged = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            merged.append(parts[i] + parts[i + 1])
            i += 2
        else:
            merged.append(parts[i])
            i += 1
    return merged


@functools.cache
def clip_tokenizer() -> ClipTokenizer:
    """The shared tokenizer, read from the vendored vocabulary on first use."""
    return ClipTokenizer(read_merges())
