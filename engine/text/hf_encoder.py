"""Adapter running a transformers ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` the way ComfyUI runs CLIP."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .profiles import ClipProfile
from .prompt_tokens import Token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerChoice:
    """Which encoder layer's output (0-based) becomes the conditioning, and whether the final norm is applied."""

    layer: int
    final_norm: bool


def choose_layer(profile: ClipProfile, num_layers: int, layer_idx: int | None = None) -> LayerChoice:
    """Resolve ComfyUI's clip-skip setting (``CLIPSetLastLayer``: -1 = last layer, -2 = penultimate, ...).

    Without ``layer_idx`` the profile's default applies. An index beyond the model's depth means the final
    output, which always has the final layer norm; a chosen layer gets it only if the profile says so (SD1 and
    SD2 do, SDXL's encoders do not, so -1 on SDXL is the last layer *before* the norm).
    """
    index = profile.layer_idx if layer_idx is None else layer_idx
    if index is None or abs(index) > num_layers:
        return LayerChoice(num_layers - 1, final_norm=True)
    layer = index + num_layers if index < 0 else index
    if layer >= num_layers:
        raise ValueError(f"layer {index} does not exist in a {num_layers}-layer text encoder")
    return LayerChoice(layer, final_norm=profile.norm_hidden)


@dataclass
class PreparedWindow:
    """A window as model input: token ids (placeholders where vectors go), vectors to splice, pooled position."""

    ids: list[int]
    splices: list[tuple[int, torch.Tensor]]
    pooled_at: int


def prepare_window(window: list[Token], width: int, profile: ClipProfile) -> PreparedWindow:
    """Split a window into ids and splices; vectors of the wrong width are dropped and the window re-padded."""
    kept: list[Token] = []
    for item in window:
        if isinstance(item, torch.Tensor) and item.shape[-1] != width:
            log.warning("embedding width %d does not match the text encoder's %d, ignoring it", item.shape[-1], width)
        else:
            kept.append(item)
    kept += [profile.pad_id] * (len(window) - len(kept))
    is_vector = [isinstance(item, torch.Tensor) for item in kept]
    ids = [0 if vector else int(item) for item, vector in zip(kept, is_vector)]
    splices = [(pos, item) for pos, (item, vector) in enumerate(zip(kept, is_vector)) if vector]
    ends = [pos for pos, (id_, vector) in enumerate(zip(ids, is_vector)) if not vector and id_ == profile.end_id]
    # The pooled output sits at the first end token (ComfyUI counts tokens up to it, whatever the padding).
    return PreparedWindow(ids, splices, ends[0] if ends else len(kept) - 1)


def place_vectors(embeds: torch.Tensor, prepared: list[PreparedWindow]) -> torch.Tensor:
    """Token embeddings [batch, tokens, dim] with each window's textual-inversion vectors put in their places."""
    if not any(p.splices for p in prepared):
        return embeds
    embeds = embeds.clone()
    for row, window in enumerate(prepared):
        for pos, vector in window.splices:
            embeds[row, pos] = vector.to(embeds)
    return embeds


class HFClipEncoder:
    """Callable ``windows -> (hidden [batch, tokens, dim] float32, pooled [batch, d] float32)`` for ``encode_chunks``.

    ``layer_idx`` is ComfyUI's clip-skip value (None = the profile default); ``projected_pooled`` overrides the
    profile (ComfyUI's "unprojected" pooled output). For numbers matching ComfyUI, which computes CLIP in float32,
    load the model in float32.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        profile: ClipProfile,
        layer_idx: int | None = None,
        projected_pooled: bool | None = None,
    ):
        self.model = model
        self.profile = profile
        # transformers 5 nests the transformer only under the projection model; 4.x nests it under both.
        self.text = getattr(model, "text_model", model)
        self.choice = choose_layer(profile, len(self.text.encoder.layers), layer_idx)
        project = profile.projected_pooled if projected_pooled is None else projected_pooled
        self.projection = getattr(model, "text_projection", None) if project else None

    @torch.no_grad()
    def __call__(self, windows: list[list[Token]]) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model.get_input_embeddings()
        prepared = [prepare_window(w, embedding.weight.shape[-1], self.profile) for w in windows]
        ids = torch.tensor([p.ids for p in prepared], dtype=torch.long, device=embedding.weight.device)
        handle = embedding.register_forward_hook(lambda module, args, output: place_vectors(output, prepared))
        try:
            out = self.text(input_ids=ids, output_hidden_states=True)
        finally:
            handle.remove()

        # hidden_states[0] is the embedding output, so layer i's output is entry i + 1.
        hidden = out.hidden_states[self.choice.layer + 1]
        if self.choice.final_norm:
            hidden = self.text.final_layer_norm(hidden)
        rows = torch.arange(len(prepared), device=ids.device)
        at = torch.tensor([p.pooled_at for p in prepared], device=ids.device)
        pooled = out.last_hidden_state[rows, at]
        if self.projection is not None:
            pooled = self.projection(pooled)
        return hidden.float(), pooled.float()
