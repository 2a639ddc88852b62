"""Qwen3 text encoders (Z-Image's ``qwen_3_4b``) loaded into transformers' Qwen3Model, behind the CLIP contract.

Files hold the decoder in transformers' names, bare or under ``model.`` (the causal-LM head, when present, is not
needed: the encoder's output is a hidden state). Sizes are read off the shapes: width from the embedding, head
width from the per-head q/k norms, head counts from the q/k projections; the rest is Qwen3's (RMS eps 1e-6,
RoPE base 1e6). The prompt goes in as Qwen's chat template and the conditioning is the hidden state after the
second-to-last layer, one vector per token, unpadded.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Mapping

import torch

from ..text.qwen_tokenizer import chat_token_ids
from .detect import Shapes, count_indices, detect_or_refuse
from .load import CastingReader, assemble, open_checkpoint

PREFIXES = ("model.", "")
ROPE_THETA = 1_000_000.0
RMS_EPS = 1e-6
DEFAULT_LAYER = -2  # Z-Image conditions on the output of the second-to-last decoder layer


@dataclass(frozen=True)
class QwenSpec:
    prefix: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


def detect_qwen(shapes: Shapes) -> QwenSpec | None:
    """The Qwen3 decoder in a file, or None when the keys are not one (Qwen2 has no q/k norms)."""
    prefix = next((p for p in PREFIXES if p + "layers.0.self_attn.q_norm.weight" in shapes), None)
    if prefix is None or prefix + "embed_tokens.weight" not in shapes:
        return None
    vocab, hidden = shapes[prefix + "embed_tokens.weight"]
    head_dim = shapes[prefix + "layers.0.self_attn.q_norm.weight"][0]
    return QwenSpec(
        prefix=prefix, vocab_size=vocab, hidden_size=hidden,
        intermediate_size=shapes[prefix + "layers.0.mlp.gate_proj.weight"][0],
        num_layers=count_indices((k for k in shapes if k.startswith(prefix + "layers.")), prefix + "layers.{}."),
        num_heads=shapes[prefix + "layers.0.self_attn.q_proj.weight"][0] // head_dim,
        num_kv_heads=shapes[prefix + "layers.0.self_attn.k_proj.weight"][0] // head_dim, head_dim=head_dim)


def qwen_config(spec: QwenSpec):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim, rms_norm_eps=RMS_EPS, max_position_embeddings=40960, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA}, use_cache=False)


def build_qwen(spec: QwenSpec, tensors: Mapping[str, torch.Tensor], device: torch.device, *, name: str):
    from transformers import Qwen3Model
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding

    config = qwen_config(spec)

    def factory():
        model = Qwen3Model(config)
        # RoPE frequencies are computed, not stored: make them on the real device, not on `meta`.
        with torch.device(device):
            model.rotary_emb = Qwen3RotaryEmbedding(config)
        return model

    def state_of(model):
        wanted = model.state_dict().keys()
        return {key: tensors[spec.prefix + key] for key in wanted if spec.prefix + key in tensors}

    return assemble(factory, state_of, "Qwen3 text encoder", name)


def load_qwen_file(path, device: torch.device | str, dtype: torch.dtype):
    """(QwenSpec, Qwen3Model) of a text-encoder file; CheckpointError when it is not a Qwen3 decoder."""
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        spec = detect_or_refuse(file, detect_qwen, "Qwen3 text encoder", "'layers.0.self_attn.q_norm'")
        return spec, build_qwen(spec, CastingReader(file.shapes, file.read, device, dtype), device, name=file.name)


class QwenTextEncoder:
    """What CLIP outputs carry for Qwen3-conditioned models: tokenize / encode_from_tokens / encode."""

    family = "z_image"

    def __init__(self, model, *, manager=None, name: str = "qwen3_4b"):
        self.models = {name: model}  # the model manager runs every network of `models`
        self.manager = manager
        self.layer_idx = DEFAULT_LAYER
        self.patches: list = []

    def clone(self) -> "QwenTextEncoder":
        other = copy.copy(self)
        other.patches = list(self.patches)
        return other

    def clip_layer(self, layer_idx: int) -> None:
        self.layer_idx = layer_idx

    def tokenize(self, prompt: str) -> dict[str, list[int]]:
        return {"qwen3": chat_token_ids(prompt)}

    @torch.no_grad()
    def encode_from_tokens(self, tokens: dict[str, list[int]], return_pooled: bool | str = False):
        model = next(iter(self.models.values()))
        captured = []
        # The chosen layer's own output, before the final norm (transformers' last hidden state is normed).
        hook = model.layers[self.layer_idx].register_forward_hook(
            lambda module, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
        try:
            with self.manager.running(self) if self.manager else contextlib.nullcontext():
                model(input_ids=torch.tensor([tokens["qwen3"]], device=next(model.parameters()).device))
        finally:
            hook.remove()
        cond = captured[0].float().cpu()
        return (cond, None) if return_pooled else cond

    def encode(self, prompt: str) -> list:
        return [[self.encode_from_tokens(self.tokenize(prompt)), {"pooled_output": None}]]
