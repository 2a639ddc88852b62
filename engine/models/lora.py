"""LoRA files as weight patches for the model manager.

A file is read once into ``LoraEntry``s, one per adapted layer under the file's own name for it (kohya
``lora_unet_...`` / ``lora_te1_...``, diffusers / PEFT ``unet....``, LDM ``diffusion_model....``). Which parameter
each name means is worked out per network from its parameter names, with the names ComfyUI accepts for that kind
of network; the original layouts' names come from the converters that load them (``convert.ldm_unet_names`` for
SD UNets, ``z_image`` / ``flux`` / ``sd3.original_names`` for the DiTs). A layer's weight may be held by
several of our parameters stacked by rows (fused q/k/v, split on loading): each parameter then takes its rows of
the change.

``LoraPatch.deltas`` follows the manager's patch protocol: ``{parameter name: change at strength 1}``, each
change computed in float32 on the parameter's device only when the manager asks for it. The arithmetic is
ComfyUI's: ``up @ down`` reshaped to the weight, scaled by ``alpha / rank`` (1 without alpha), LoCon's
``lora_mid`` folded in between, DoRA's ``dora_scale`` re-norming the result; ``.diff`` / ``.diff_b`` are added
as they are.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import torch

from . import convert, flux, sd3, z_image
from .detect import CheckpointError
from .load import open_checkpoint
from .manager import LazyTensors

log = logging.getLogger("comfyd.lora")

# What a file key holds, by its ending. Each up/down pair is one of the namings ComfyUI reads: kohya / LyCORIS
# (LoCon adds lora_mid), diffusers attention processors, PEFT (also with its adapter name), diffusers,
# transformers, Mochi. Old LyCORIS full-weight files call their differences w_norm / b_norm.
_SUFFIXES = (
    (".lora_up.weight", "up"), (".lora_down.weight", "down"), (".lora_mid.weight", "mid"),
    ("_lora.up.weight", "up"), ("_lora.down.weight", "down"),
    (".lora_B.default.weight", "up"), (".lora_A.default.weight", "down"),
    (".lora_B.weight", "up"), (".lora_A.weight", "down"),
    (".lora.up.weight", "up"), (".lora.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"), (".lora_linear_layer.down.weight", "down"),
    (".lora_B", "up"), (".lora_A", "down"),
    (".alpha", "alpha"), (".dora_scale", "dora_scale"),
    (".diff", "diff"), (".diff_b", "diff_b"), (".w_norm", "diff"), (".b_norm", "diff_b"),
)

# The text-encoder layers kohya and diffusers LoRAs name (attention projections and MLP of each layer).
_TEXT_LAYER_PARTS = frozenset({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                               "mlp.fc1", "mlp.fc2"})

# Per text encoder: the kohya prefixes and the diffusers prefix it answers to, and its projection's names (as
# ComfyUI maps them). BigG next to CLIP-L (SDXL base) is the second encoder; alone (the refiner) the only one.
_TEXT_NAMES = {
    "clip_l": (("lora_te_", "lora_te1_"), "text_encoder."),
    "clip_h": (("lora_te_", "lora_te1_"), "text_encoder."),
    "clip_g": (("lora_te2_",), "text_encoder_2."),
    "clip_g_alone": (("lora_te_", "lora_prior_te_"), "text_encoder."),
}
_PROJECTION_NAMES = {"clip_l": ("lora_te1_text_projection",), "clip_h": (),
                     "clip_g": ("lora_te2_text_projection", "lora_prior_te_text_projection")}
# The CLIPs whose presence changes the names of the text encoders beside them (see LoraPatch).
_NAMING_CLIPS = frozenset({"l", "g"})
# kohya (OneTrainer) numbers T5-XXL after the CLIPs beside it, by which of CLIP-L / bigG those are; next to CLIP-L
# alone (FLUX) ComfyUI reads both te2 and te3.
_T5_KOHYA_PREFIXES = {frozenset(): ("lora_te1_",), frozenset({"g"}): ("lora_te2_",),
                      frozenset({"l"}): ("lora_te2_", "lora_te3_"), frozenset({"l", "g"}): ("lora_te3_",)}
# Diffusers names of a DiT's layers: bare or under these prefixes, or flat (dots as underscores) under these.
_DIT_PREFIXES, _DIT_FLAT_PREFIXES = ("", "diffusion_model.", "transformer."), ("lycoris_",)
# SD3 also answers to flash-sd3's PEFT "base_model.model." and OneTrainer's flat "lora_transformer_".
_SD3_PREFIXES, _SD3_FLAT_PREFIXES = _DIT_PREFIXES + ("base_model.model.",), _DIT_FLAT_PREFIXES + ("lora_transformer_",)

_LISTED = 5  # unmatched keys named in the warning


@dataclass(frozen=True)
class LoraEntry:
    """What a LoRA file holds for one layer; ``keys`` are the file's keys for it."""
    keys: tuple[str, ...]
    up: torch.Tensor | None = None
    down: torch.Tensor | None = None
    mid: torch.Tensor | None = None
    alpha: float | None = None
    dora_scale: torch.Tensor | None = None
    diff: torch.Tensor | None = None
    diff_b: torch.Tensor | None = None

    def product_shape(self) -> tuple[int, int] | None:
        """(rows, columns) of ``up @ down`` (with ``mid`` folded in), or None when the factors do not chain."""
        if self.up is None or self.down is None or self.up.dim() < 2 or self.down.dim() < 2:
            return None
        rank = self.down.shape[0]
        if self.mid is None:
            inner, columns = rank, self.down[0].numel()
        else:
            if self.mid.dim() != 4 or self.mid.shape[1] != rank:
                return None
            inner, columns = self.mid.shape[0], self.down[0].numel() * self.mid[0, 0].numel()
        return (self.up.shape[0], columns) if self.up[0].numel() == inner else None

    def rows(self, block) -> "LoraEntry":
        """The layer's change restricted to output rows ``block`` (``...``: all of them)."""
        def cut(tensor):
            return None if tensor is None else tensor[block]

        dora = self.dora_scale
        per_row = dora is not None and self.up is not None and dora.shape[0] == self.up.shape[0]
        return dataclasses.replace(self, up=cut(self.up), diff=cut(self.diff), diff_b=cut(self.diff_b),
                                   dora_scale=cut(dora) if per_row else dora)


def _f32(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor.to(device=device, dtype=torch.float32)


def low_rank_delta(entry: LoraEntry, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """``up @ down`` (LoCon: ``up @ mid @ down``) in float32, reshaped to ``shape``, times alpha / rank."""
    down = _f32(entry.down, device)
    rank = down.shape[0]
    down = down.flatten(1)
    if entry.mid is not None:  # Tucker core (rank x rank x kh x kw) between the 1x1 down and up projections
        down = torch.einsum("abhw,bi->aihw", _f32(entry.mid, device), down).flatten(1)
    scale = 1.0 if entry.alpha is None else entry.alpha / rank
    return (_f32(entry.up, device).flatten(1) @ down).mul_(scale).reshape(shape)


def dora_delta(entry: LoraEntry, weight: torch.Tensor) -> torch.Tensor:
    """DoRA: the LoRA-updated weight scaled to the learned magnitudes, as a change to ``weight`` as it is now."""
    w = _f32(weight.detach(), weight.device)
    updated = w + low_rank_delta(entry, weight.shape, weight.device)
    magnitude = _f32(entry.dora_scale, weight.device)
    if magnitude.shape[0] == w.shape[0]:  # per output row; ComfyUI takes these norms from the weight before the update
        norm = w.reshape(w.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (w.dim() - 1))
    else:  # per input column, of the updated weight
        norm = updated.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1).reshape(1, -1, *[1] * (w.dim() - 2))
    return updated.mul_(magnitude / (norm + torch.finfo(torch.float32).eps)).sub_(w)


class LoraPatch:
    """One LoRA file's layers. ``deltas(target, params)`` is the model manager's patch protocol.

    ``clips``: which of CLIP-L ("l") and bigG ("g") the CLIP it patches holds, as the names of a text encoder
    depend on the CLIPs beside it: bigG without CLIP-L (the SDXL refiner) takes a first text encoder's names
    (``lora_te_``, ``text_encoder.``), kohya numbers T5-XXL after them. Get the view for a CLIP with
    ``for_text_encoders``.
    """

    def __init__(self, entries: Mapping[str, LoraEntry], unparsed: Iterable[str] = (), *, name: str = "",
                 clips: Iterable[str] = _NAMING_CLIPS):
        self.entries = dict(entries)
        self.unparsed = tuple(unparsed)  # keys of no known LoRA form
        self.name = name
        self.clips = frozenset(clips)
        self._views: dict[frozenset, LoraPatch] = {self.clips: self}  # shared by all views of the file

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], *, name: str = "") -> "LoraPatch":
        parts: dict[str, dict] = {}
        unparsed = []
        for key, tensor in tensors.items():
            found = next(((suffix, role) for suffix, role in _SUFFIXES if key.endswith(suffix)), None)
            if found is None:
                unparsed.append(key)
                continue
            suffix, role = found
            layer = parts.setdefault(key[:-len(suffix)], {"keys": []})
            layer["keys"].append(key)
            layer[role] = float(tensor.item()) if role == "alpha" else tensor
        entries = {layer: LoraEntry(keys=tuple(p.pop("keys")), **p) for layer, p in parts.items()}
        return cls(entries, unparsed, name=name)

    @property
    def keys(self) -> list[str]:
        return [k for entry in self.entries.values() for k in entry.keys] + list(self.unparsed)

    def for_text_encoders(self, encoders: Iterable[str]) -> "LoraPatch":
        """This LoRA as it applies to a CLIP with these encoders ("l", "h", "g", "t5xxl", ...); the same object
        each time."""
        clips = frozenset(encoders) & _NAMING_CLIPS
        if clips not in self._views:
            view = LoraPatch(self.entries, self.unparsed, name=self.name, clips=clips)
            view._views = self._views
            self._views[clips] = view
        return self._views[clips]

    def layers(self, target: str, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """{LoRA layer name: the parameters its weight is, stacked by rows} of the layers this file adapts in
        ``target`` ("unet", "clip_l", ...); one parameter unless the original layout fused what we hold apart."""
        key_map = _key_map(target, tuple(names), self.clips)
        return {layer: key_map[layer] for layer in self.entries if layer in key_map}

    def matched_keys(self, target: str, names: Iterable[str]) -> set[str]:
        return {k for layer in self.layers(target, names) for k in self.entries[layer].keys}

    def deltas(self, target: str, params: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        plan: dict[str, Callable[[], torch.Tensor]] = {}
        for layer, names in self.layers(target, params).items():
            entry, weights = self.entries[layer], [params[name] for name in names]
            if entry.diff is not None:
                self._plan_diff(plan, layer, names, entry.diff, weights)
            elif entry.up is not None or entry.down is not None:
                self._plan_low_rank(plan, layer, names, entry, weights)
            biases = tuple(name.removesuffix(".weight") + ".bias" for name in names)
            if entry.diff_b is not None and all(n.endswith(".weight") and b in params for n, b in zip(names, biases)):
                self._plan_diff(plan, layer, biases, entry.diff_b, [params[b] for b in biases])
        return LazyTensors(plan)

    def _plan_low_rank(self, plan, layer: str, names: tuple[str, ...], entry: LoraEntry, weights: list) -> None:
        shape, product = _stacked_shape(weights), entry.product_shape()
        split = len(weights) > 1
        if product is None or math.prod(product) != math.prod(shape) or (split and product[0] != shape[0]):
            self._skip(layer, names, "its factors do not make a weight of shape " + str(tuple(shape)))
            return
        if split and entry.dora_scale is not None and entry.dora_scale.shape[0] != shape[0]:
            self._skip(layer, names, "DoRA magnitudes per input column need the parts' weights as one")
            return
        for name, weight, block in _row_blocks(names, weights):
            part = entry.rows(block)
            if part.dora_scale is not None:
                plan[name] = functools.partial(dora_delta, part, weight)
            else:
                plan[name] = functools.partial(low_rank_delta, part, weight.shape, weight.device)

    def _plan_diff(self, plan, layer: str, names: tuple[str, ...], diff: torch.Tensor, params: list) -> None:
        shape = _stacked_shape(params)
        if diff.shape != shape:
            self._skip(layer, names, f"difference of shape {tuple(diff.shape)} != {tuple(shape)}")
            return
        for name, param, block in _row_blocks(names, params):
            plan[name] = functools.partial(_f32, diff[block], param.device)

    def _skip(self, layer: str, names: tuple[str, ...], why: str) -> None:
        log.warning("LoRA %s: %s not applied to %s: %s", self.name, layer, " + ".join(names), why)


def _stacked_shape(params: list) -> torch.Size:
    """The shape of ``params`` stacked by rows (the one parameter's own shape when alone)."""
    if len(params) == 1:
        return params[0].shape
    return torch.Size((sum(p.shape[0] for p in params), *params[0].shape[1:]))


def _row_blocks(names: tuple[str, ...], params: list) -> Iterator[tuple[str, torch.Tensor, object]]:
    """(name, parameter, its rows of the stacked weight: a slice, or ``...`` for a parameter alone)."""
    if len(params) == 1:
        yield names[0], params[0], ...
        return
    start = 0
    for name, param in zip(names, params):
        yield name, param, slice(start, start + param.shape[0])
        start += param.shape[0]


def load_lora(path: str | os.PathLike) -> LoraPatch:
    """A LoRA file (``.safetensors``, or ``.pt`` / ``.ckpt`` read with ``torch.load(weights_only=True)``)."""
    name = os.path.basename(os.fspath(path))
    try:
        with open_checkpoint(path, torch.device("cpu")) as file:
            tensors = {key: file.read(key) for key in file.shapes}
    except CheckpointError as exc:
        cause = exc.__cause__ or exc
        raise ValueError(f"{name}: not a readable LoRA file ({type(cause).__name__}: {cause})") from exc
    return LoraPatch.from_tensors(tensors, name=name)


def apply_lora(model, clip, patch: LoraPatch, strength_model: float, strength_clip: float):
    """(MODEL, CLIP) clones carrying ``(patch, strength)``; either input may be None (then None comes back).

    Warns once, with their count, about the file's keys that adapt nothing in the given model and CLIP.
    """
    used: set[str] = set()
    new_model = new_clip = None
    if model is not None:
        new_model = model.clone()
        new_model.patches.append((patch, strength_model))
        used |= patch.matched_keys("unet", _parameter_names(model.unet))
    if clip is not None:
        view = patch.for_text_encoders(clip.models)
        new_clip = clip.clone()
        new_clip.patches.append((view, strength_clip))
        for encoder, network in clip.models.items():
            used |= view.matched_keys(f"clip_{encoder}", _parameter_names(network))
    missing = [k for k in patch.keys if k not in used]
    if missing:
        log.warning("lora key not loaded: %d of %d keys of %s match no weight of this model: %s%s", len(missing),
                    len(patch.keys), patch.name or "the LoRA", ", ".join(missing[:_LISTED]),
                    " ..." if len(missing) > _LISTED else "")
    return new_model, new_clip


def _parameter_names(network: torch.nn.Module) -> list[str]:
    return [name for name, _ in network.named_parameters()]


@functools.lru_cache(maxsize=16)
def _key_map(role: str, names: tuple[str, ...], clips: frozenset) -> dict[str, tuple[str, ...]]:
    """{LoRA layer name: parameters stacked by rows} for a network with parameters ``names``; role: "unet" (the
    diffusion network, whichever it is: told apart by its parameter names) or a text encoder of a CLIP holding
    ``clips`` (LoraPatch.clips)."""
    if role != "unet":
        return _text_key_map(role, names, clips)
    if z_image.is_z_image_network(names):
        return _dit_key_map(z_image.original_names(names), names)
    if flux.is_flux_network(names):
        return _dit_key_map(flux.original_names(names), names)
    if sd3.is_sd3_network(names):
        return _dit_key_map(sd3.original_names(names), names, _SD3_PREFIXES, _SD3_FLAT_PREFIXES)
    return _unet_key_map(names)


def _original_layout_keys(originals: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """ComfyUI's names for the original layout's parameters: generic ``diffusion_model.`` (non-weights by their
    full name) and kohya's ``lora_unet_``."""
    out = {}
    for original, ours in originals.items():
        layer = original.removesuffix(".weight")
        if layer != original:
            out["lora_unet_" + layer.replace(".", "_")] = ours
        out["diffusion_model." + layer] = ours
    return out


def _unet_key_map(names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    out = _original_layout_keys({ldm: (name,) for ldm, name in convert.ldm_unet_names(names).items()})
    for name in names:
        if not name.endswith(".weight"):
            continue
        layer, one = name.removesuffix(".weight"), (name,)
        flat = layer.replace(".", "_")
        out["lora_unet_" + flat] = one
        out["lycoris_" + flat] = one
        out["unet." + layer] = one  # PEFT
        processor = layer.replace(".to_", ".processor.to_")  # diffusers' attention-processor naming
        if processor.endswith(".to_out.0"):
            processor = processor[:-len(".0")]
        out[processor] = one
        out["unet." + processor] = one
    return out


def _dit_key_map(originals: Mapping[str, tuple[str, ...]], names: tuple[str, ...], prefixes=_DIT_PREFIXES,
                 flat_prefixes=_DIT_FLAT_PREFIXES) -> dict[str, tuple[str, ...]]:
    """Z-Image / FLUX / SD3: the original layout's names (``originals``: a fused q/k/v is our to_q, to_k, to_v)
    and diffusers' names under ``prefixes``, or flat under ``flat_prefixes``."""
    out = _original_layout_keys(originals)
    for name in names:
        if name.endswith(".weight"):
            layer, one = name.removesuffix(".weight"), (name,)
            out.update((prefix + layer, one) for prefix in prefixes)
            out.update((prefix + layer.replace(".", "_"), one) for prefix in flat_prefixes)
    return out


def _text_key_map(role: str, names: tuple[str, ...], clips: frozenset) -> dict[str, tuple[str, ...]]:
    if role == "clip_t5xxl":
        return _t5_key_map(names, clips)
    if role == "clip_g" and "l" not in clips:
        role = "clip_g_alone"
    if role not in _TEXT_NAMES:
        return _generic_text_keys(role.removeprefix("clip_"), names, "model.")
    target = role.removesuffix("_alone")
    kohya_prefixes, diffusers_prefix = _TEXT_NAMES[role]
    out = {}
    for name in names:
        full = convert.text_model_name(name)
        if not full.endswith(".weight"):
            continue
        layer, one = full.removesuffix(".weight"), (name,)
        out[f"text_encoders.{target}.transformer.{layer}"] = one  # ComfyUI's generic naming
        if layer.startswith("text_model.encoder.layers.") and layer.split(".", 4)[-1] in _TEXT_LAYER_PARTS:
            out.update((prefix + layer.replace(".", "_"), one) for prefix in kohya_prefixes)
            out[diffusers_prefix + layer] = one
        elif layer == "text_projection":
            out.update((key, one) for key in _PROJECTION_NAMES[target])
    return out


def _generic_text_keys(encoder: str, names: tuple[str, ...], below: str = "") -> dict[str, tuple[str, ...]]:
    """ComfyUI's generic naming of a text encoder's weights: ``text_encoders.<encoder>.transformer.<below><name>``.
    ``below``: what ComfyUI's module holds ours under (LLM text encoders such as Z-Image's Qwen3, which we hold as
    transformers' base model: ``model.``)."""
    return {f"text_encoders.{encoder}.transformer.{below}{name.removesuffix('.weight')}": (name,)
            for name in names if name.endswith(".weight")}


def _t5_key_map(names: tuple[str, ...], clips: frozenset) -> dict[str, tuple[str, ...]]:
    """T5-XXL (FLUX, SD3), whose parameter names are ComfyUI's: the generic naming and kohya's, numbered after
    ``clips``."""
    out = _generic_text_keys("t5xxl", names)
    for name in names:
        if name.endswith(".weight"):
            flat = name.removesuffix(".weight").replace(".", "_")
            out.update((prefix + flat, (name,)) for prefix in _T5_KOHYA_PREFIXES[clips])
    return out
