"""Adapter running a transformers ``T5EncoderModel`` the way ComfyUI runs T5-XXL for Flux."""

from __future__ import annotations

import torch

from .hf_encoder import choose_layer, place_vectors, prepare_window
from .profiles import ClipProfile
from .prompt_tokens import Token


class T5Encoder:
    """Callable ``windows -> (hidden [batch, tokens, dim] float32, None)`` for ``encode_chunks``.

    No attention mask: ComfyUI lets the padding attend like any other token. ``layer_idx`` is the clip-skip value
    (None = the final output, after the final layer norm); an earlier layer's output also gets that norm.
    """

    def __init__(self, model: torch.nn.Module, profile: ClipProfile, layer_idx: int | None = None):
        self.model = model
        self.profile = profile
        self.choice = choose_layer(profile, len(model.encoder.block), layer_idx)

    @torch.no_grad()
    def __call__(self, windows: list[list[Token]]) -> tuple[torch.Tensor, None]:
        embedding = self.model.get_input_embeddings()
        prepared = [prepare_window(w, embedding.weight.shape[-1], self.profile) for w in windows]
        ids = torch.tensor([p.ids for p in prepared], dtype=torch.long, device=embedding.weight.device)
        captured = []
        block = self.model.encoder.block[self.choice.layer]
        hook = block.register_forward_hook(
            lambda module, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
        try:
            self.model(inputs_embeds=place_vectors(embedding(ids), prepared))
        finally:
            hook.remove()
        # The final output is the last block's output through the final norm, which is what this computes too.
        hidden = captured[0]
        if self.choice.final_norm:
            hidden = self.model.encoder.final_layer_norm(hidden)
        return hidden.float(), None
