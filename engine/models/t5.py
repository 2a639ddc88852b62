"""T5 text encoders (Flux's T5-XXL) loaded into transformers' T5EncoderModel.

Files hold the encoder in transformers' names (``shared.weight``, ``encoder.block.{i}.layer.{0,1}...``,
``encoder.final_layer_norm.weight``), bare or under a full checkpoint's ``text_encoders.t5xxl.transformer.``.
Sizes are read off the shapes: head count from the relative attention bias table (only block 0 has one), head
width from the query rows, the feed-forward kind from its keys (v1.1's gated GELU ``wi_0``/``wi_1``, v1.0's ReLU
``wi``). fp8 files are upcast while loading, and the weights of ComfyUI's "scaled fp8" files multiplied back by
their ``.scale_weight`` (both done by CastingReader).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch

from .cast import compute_dtype, narrow_storage
from .detect import Shapes, count_indices, detect_or_refuse
from .load import CastingReader, LoadedTextEncoder, assemble, open_checkpoint

PREFIXES = ("", "text_encoders.t5xxl.transformer.")
LAYER_NORM_EPS = 1e-6
MAX_DISTANCE = 128  # relative positions beyond this share the last bucket
EMBEDDING = "shared.weight"
TIED_EMBEDDING = "encoder.embed_tokens.weight"  # transformers' second name for the same table


@dataclass(frozen=True)
class T5Spec:
    prefix: str
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    num_buckets: int
    gated: bool
    name: str = "t5xxl"  # ComfyUI's key for this encoder's tokens


def find_prefix(shapes: Shapes) -> str | None:
    """Where a T5 encoder's keys start in a file, or None when it holds none."""
    return next((p for p in PREFIXES if p + "encoder.final_layer_norm.weight" in shapes), None)


def detect_t5(shapes: Shapes) -> T5Spec | None:
    """The T5 encoder in a file, or None when its keys are not one."""
    prefix = find_prefix(shapes)
    if prefix is None:
        return None
    block = prefix + "encoder.block.0.layer."
    buckets, heads = shapes[block + "0.SelfAttention.relative_attention_bias.weight"]
    gated = block + "1.DenseReluDense.wi_0.weight" in shapes
    vocab, width = shapes[prefix + EMBEDDING]
    return T5Spec(
        prefix=prefix, vocab_size=vocab, d_model=width, d_kv=shapes[block + "0.SelfAttention.q.weight"][0] // heads,
        d_ff=shapes[block + ("1.DenseReluDense.wi_0.weight" if gated else "1.DenseReluDense.wi.weight")][0],
        num_layers=count_indices((k for k in shapes if k.startswith(prefix + "encoder.block.")),
                                 prefix + "encoder.block.{}."),
        num_heads=heads, num_buckets=buckets, gated=gated)


def t5_config(spec: T5Spec):
    from transformers import T5Config

    return T5Config(
        vocab_size=spec.vocab_size, d_model=spec.d_model, d_kv=spec.d_kv, d_ff=spec.d_ff, num_layers=spec.num_layers,
        num_heads=spec.num_heads, relative_attention_num_buckets=spec.num_buckets,
        relative_attention_max_distance=MAX_DISTANCE, layer_norm_epsilon=LAYER_NORM_EPS,
        feed_forward_proj="gated-gelu" if spec.gated else "relu", dropout_rate=0.0, is_encoder_decoder=False,
        use_cache=False)


def build_t5(spec: T5Spec, tensors: Mapping[str, torch.Tensor], *, name: str):
    from transformers import T5EncoderModel

    def state_of(model):
        state = {key: tensors[spec.prefix + key] for key in model.state_dict()
                 if key != TIED_EMBEDDING and spec.prefix + key in tensors}
        if EMBEDDING in state:
            state[TIED_EMBEDDING] = state[EMBEDDING]  # one table, as in the model
        return state

    model = assemble(lambda: T5EncoderModel(t5_config(spec)), state_of, "T5 text encoder", name)
    model.set_input_embeddings(model.shared)  # one module, so that moving the model moves one table
    # fp8 weights read as they are stored stay fp8, but for the feed-forward outputs: transformers' T5 casts its
    # hidden states to their weight's dtype.
    return narrow_storage(model, compute_dtype(model), skip=(".wo",))


def load_t5_file(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype) -> LoadedTextEncoder:
    """A T5 encoder file as (T5Spec, T5EncoderModel); CheckpointError when it is not one."""
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        spec = detect_or_refuse(file, detect_t5, "T5 text encoder", "'encoder.final_layer_norm.weight'")
        model = build_t5(spec, CastingReader(file.shapes, file.read, device, dtype, keep_fp8=True), name=file.name)
        return LoadedTextEncoder(spec, model)


def is_t5_file(path: str | os.PathLike) -> bool:
    """Whether a text-encoder file holds a T5 encoder (else it should be CLIP), from its key names only."""
    with open_checkpoint(path, torch.device("cpu")) as file:
        return find_prefix(file.shapes) is not None
