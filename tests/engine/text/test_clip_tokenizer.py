import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.text.clip_tokenizer import (
    END_ID,
    START_ID,
    VOCAB_FILE,
    build_vocab,
    clip_tokenizer,
    read_merges,
)

REPO = Path(__file__).resolve().parents[3]


def standard_clip_vocab_files(directory: Path) -> Path:
    """vocab.json / merges.txt written by OpenAI CLIP's own recipe, independently of engine.text."""
    lines = gzip.open(VOCAB_FILE, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    symbols = [chr(c) for c in cs]
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    import transformers
    directory = standard_clip_vocab_files(tmp_path_factory.mktemp("clip_vocab"))
    return transformers.CLIPTokenizer.from_pretrained(str(directory))


@pytest.fixture(scope="module")
def tok():
    return clip_tokenizer()


# Text on which every transformers CLIP tokenizer variant agrees (CJK and control characters are handled apart).
AGREED = [
    "a photo of a cat",
    "",
    "   ",
    "A Photo OF a CAT",
    "Hello, World!!! 123 4567.89 3.14159",
    "it's we'll I'M they're don't 'sa ''s",
    "masterpiece, best quality, (ultra-detailed:1.2), 8k uhd, [blurry]",
    "tab\there\nnew line\r\nand   extra    spaces  ",
    "café naïve ÉCOLE straße",
    "e\u0301 composed by NFC",
    "emoji 😀👍🏽 test",
    "русский текст Ελληνικά",
    "a_b-c+d=e/f\\g|h~`@#$%^&*",
    "!!!???...,,,;;; :) <3",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "½ ² ۱۲۳ Ⅻ numbers",
    "<|startoftext|>literal<|endoftext|> specials",
    "x" * 200,
]


@pytest.mark.parametrize("text", AGREED)
def test_matches_transformers_clip_tokenizer(tok, reference, text):
    assert tok(text) == reference(text)["input_ids"]


def test_cjk_ideographs_are_tokenized_one_by_one(tok, reference):
    # ComfyUI's (ftfy-less) tokenizer puts spaces around each CJK ideograph before the word regex.
    assert tok("日本語 中文") == reference("日 本 語 中 文")["input_ids"]
    assert tok("猫cat") == reference("猫 cat")["input_ids"]
    # Kana and Hangul are not in those blocks, so they stay one word.
    assert tok("カタカナ 한국어") == reference("カタカナ 한국어")["input_ids"]


def test_control_characters_are_dropped_and_unicode_spaces_split(tok, reference):
    assert tok("a\x00b\ufffdc\x07d\u200be") == reference("abcde")["input_ids"]
    assert tok("a\u3000b\u00a0c") == reference("a b c")["input_ids"]


def test_known_clip_ids(tok):
    assert tok("a photo of a cat") == [START_ID, 320, 1125, 539, 320, 2368, END_ID]
    assert (START_ID, END_ID) == (49406, 49407)
    assert tok("") == [49406, 49407]
    assert tok.encode("<|endoftext|>") == [49407]
    # Uppercase specials are lowercased first, and then still read as specials (as transformers does).
    assert tok.encode("<|ENDOFTEXT|>") == [49407]


def test_vocabulary_layout():
    merges = read_merges()
    assert len(merges) == 48894
    vocab = build_vocab(merges)
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == START_ID and vocab["<|endoftext|>"] == END_ID
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["".join(merges[0])] == 512


def test_vocabulary_matches_standard_recipe(tmp_path):
    directory = standard_clip_vocab_files(tmp_path)
    expected = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    assert build_vocab(read_merges()) == expected


def test_tokenizer_is_cached_and_not_built_at_import():
    assert clip_tokenizer() is clip_tokenizer()
    code = (
        "import engine.text\n"
        "from engine.text.clip_tokenizer import clip_tokenizer\n"
        "assert clip_tokenizer.cache_info().currsize == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
