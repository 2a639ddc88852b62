"""ControlNets and T2I-Adapters: loading their single files, and what they add to the UNet at each step.

CONTROL_NET values are `ControlNet` / `T2IAdapter` objects with ComfyUI's protocol (`copy`, `set_cond_hint`,
`set_previous_controlnet`): the loader returns one without a hint, the apply nodes put hinted copies into the
conditioning options under "control", chained through `previous`. While sampling, `residuals(...)` gives the
`Residuals` of the whole chain for one batched model call, and the UNet adds them where ComfyUI's LDM UNet does.

ControlNets run on diffusers' ControlNetModel (the same network as the LDM ``cldm`` one), converted from the LDM
layout (``control_model.`` prefix or bare) with diffusers' single-file converter, or loaded as saved by diffusers.
Control-LoRAs (a ``lora_controlnet`` marker, LDM names without prefix) hold the ControlNet as a change to the
UNet it is applied to: full tensors for its own parts, ``.up``/``.down`` factors for the layers it shares with the
UNet. Their network is built from that UNet when they first run with it (see `ControlLora`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import os
import weakref
from typing import Callable, Mapping

import torch
from diffusers import ControlNetModel
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, convert_controlnet_checkpoint

from ..resize import common_upscale
from . import convert
from .detect import FAMILIES, CheckpointError, UNetSpec, count_indices, detect_unet, unet_family
from .load import CastingReader, assemble, open_checkpoint
from .manager import same_patches
from .t2i_adapter import Adapter, AdapterLayout, detect_adapter, diffusers_adapter_names

log = logging.getLogger("comfyd.models")

HINT_SCALE = 8  # hint pixels per latent pixel
HINT_UPSCALE = "nearest-exact"
LDM_CONTROL_PREFIX = "control_model."  # released files' prefix, the one diffusers' converter looks for
LDM_PREFIXES = (LDM_CONTROL_PREFIX, "")
LORA_MARKER = "lora_controlnet"
LORA_FACTORS = (".up", ".down")
_CONTROLNET_ARGS = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}


def unsupported(name: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{name}: not a supported ControlNet or T2I-Adapter ({reason})")


# -- what the UNet gets ---------------------------------------------------------------------------------------


def _add(a, b):
    return b if a is None else a if b is None else a + b


def _add_lists(a: list, b: list) -> list:
    return [_add(a[i] if i < len(a) else None, b[i] if i < len(b) else None) for i in range(max(len(a), len(b)))]


def _intrablock_points(unet) -> list[int]:
    """For each diffusers down block, the LDM input block whose output its adapter residual lands on: the last
    res/attention pair of a cross-attention block, otherwise the block's last output (after its downsampler)."""
    points, index = [], 1  # LDM input block 0 is conv_in
    for block in unet.down_blocks:
        downsamples = block.downsamplers is not None
        last = index + len(block.resnets) - 1
        points.append(last + 1 if downsamples and not getattr(block, "has_cross_attention", False) else last)
        index += len(block.resnets) + downsamples
    return points


@dataclasses.dataclass
class Residuals:
    """What control models add to a UNet's activations, indexed by LDM input block (0 = conv_in); None adds nothing.

    `blocks[i]` is added to input block i's output, so it flows on and into its skip (T2I-Adapters); `skips[i]`
    only to the skip connection of input block i (ControlNets); `middle` to the middle block's output (both).
    `pending` holds the residuals of controls made from the UNet they act on (Control-LoRAs), as functions of
    that UNet: only the model call knows it, with the running clone's weights in place.
    """
    blocks: list = dataclasses.field(default_factory=list)
    skips: list = dataclasses.field(default_factory=list)
    middle: torch.Tensor | None = None
    pending: tuple[Callable[[torch.nn.Module], "Residuals"], ...] = ()

    def __add__(self, other: "Residuals") -> "Residuals":
        return Residuals(_add_lists(self.blocks, other.blocks), _add_lists(self.skips, other.skips),
                         _add(self.middle, other.middle), self.pending + other.pending)

    def unet_kwargs(self, unet, device: torch.device) -> dict:
        """The keyword arguments that make a diffusers UNet2DConditionModel add these residuals."""
        if self.pending:
            resolved = dataclasses.replace(self, pending=())
            for residuals_for in self.pending:
                resolved = resolved + residuals_for(unet)
            return resolved.unet_kwargs(unet, device)
        dtype = unet.dtype
        zero = torch.zeros((), dtype=dtype, device=device)  # broadcasts where a block gets nothing

        def pick(values, index):
            value = values[index] if index < len(values) else None
            return zero if value is None else value.to(device, dtype)

        out = {}
        if any(s is not None for s in self.skips) or self.middle is not None:
            count = 1 + sum(len(b.resnets) + (b.downsamplers is not None) for b in unet.down_blocks)
            skips = [pick(self.skips, i) for i in range(count)]
            middle = zero if self.middle is None else self.middle.to(device, dtype)
            if unet.mid_block is None:
                # Without a middle block ComfyUI's UNet adds both residuals in place to one tensor, the last input
                # block's output, which is also that block's skip: the skip and the middle both carry their sum.
                skips[-1] = middle = skips[-1] + middle
            out["down_block_additional_residuals"] = tuple(skips)
            out["mid_block_additional_residual"] = middle
        if any(b is not None for b in self.blocks):
            points = _intrablock_points(unet)
            lost = [i for i, b in enumerate(self.blocks) if b is not None and i not in points]
            if lost:
                log.warning("control residuals for input blocks %s have no place in this UNet", lost)
            out["down_intrablock_additional_residuals"] = [pick(self.blocks, i) for i in points]
        return out


# -- controls --------------------------------------------------------------------------------------------------


def broadcast_hint(hint: torch.Tensor, batch: int, chunks: int) -> torch.Tensor:
    """A hint batch for a model batch of `chunks` equal parts (cond, uncond, ...): one hint image serves all;
    otherwise each part gets the hint images in order, repeated to the part's size."""
    if hint.shape[0] == 1:
        return hint
    per_chunk = batch // chunks
    hint = hint[:per_chunk]
    if hint.shape[0] < per_chunk:
        hint = hint.repeat((math.ceil(per_chunk / hint.shape[0]), 1, 1, 1))[:per_chunk]
    return hint if hint.shape[0] == batch else hint.repeat((chunks, 1, 1, 1))


@dataclasses.dataclass(eq=False)  # compared and hashed by identity: the sampler batches conds sharing one
class ControlBase:
    control_model: torch.nn.Module
    manager: object = None
    hint: torch.Tensor | None = None  # [B, C, H, W], 0..1
    strength: float = 1.0
    percent_range: tuple[float, float] = (0.0, 1.0)
    previous: "ControlBase | None" = None
    vae: object = None  # accepted for ComfyUI's signature; SD ControlNets work in pixel space
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def copy(self) -> "ControlBase":
        return dataclasses.replace(self)

    def set_cond_hint(self, hint: torch.Tensor, strength: float = 1.0, timestep_percent_range=(0.0, 1.0),
                      vae=None, extra_concat=()) -> "ControlBase":
        self.hint, self.strength, self.percent_range, self.vae = hint, strength, tuple(timestep_percent_range), vae
        self._cache.clear()
        return self

    def set_previous_controlnet(self, previous: "ControlBase | None") -> "ControlBase":
        self.previous = previous
        return self

    def active(self, model_sampling, sigma: torch.Tensor) -> bool:
        current = float(sigma[0])
        start, end = (model_sampling.percent_to_sigma(p) for p in self.percent_range)
        return end <= current <= start

    def residuals(self, model_sampling, x: torch.Tensor, sigma: torch.Tensor, model_conds: dict,
                  chunks: int = 1) -> Residuals | None:
        """The residuals of this control and the ones before it for one model call on `x` (`chunks` conds
        batched together); None when none of them is active at `sigma`."""
        previous = None
        if self.previous is not None:
            previous = self.previous.residuals(model_sampling, x, sigma, model_conds, chunks)
        if not self.active(model_sampling, sigma):
            return previous
        own = self._residuals(model_sampling, x, sigma, model_conds, chunks)
        return own if previous is None else previous + own

    def _running(self):
        return self.manager.running(self) if self.manager else contextlib.nullcontext()

    def _residuals(self, model_sampling, x, sigma, model_conds, chunks) -> Residuals:
        raise NotImplementedError


@dataclasses.dataclass(eq=False)
class ControlNet(ControlBase):
    global_average_pooling: bool = False  # "shuffle" ControlNets

    def _resized_hint(self, width: int, height: int, device, dtype) -> torch.Tensor:
        key = (width, height, device, dtype)
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = common_upscale(self.hint, width, height, HINT_UPSCALE, "center").to(device, dtype)
        return self._cache[key]

    def _residuals(self, model_sampling, x, sigma, model_conds, chunks) -> Residuals:
        network = self.control_model
        dtype = network.dtype
        with self._running():
            device = next(network.parameters()).device
            hint = self._resized_hint(x.shape[3] * HINT_SCALE, x.shape[2] * HINT_SCALE, device, dtype)
            context = model_conds.get("crossattn_controlnet", model_conds["c_crossattn"])
            added = None
            if network.config.addition_embed_type is not None:
                added = {k: model_conds[k].to(device, dtype) for k in ("text_embeds", "time_ids")}
            skips, middle = network(
                model_sampling.calculate_input(sigma, x).to(device, dtype),
                model_sampling.timestep(sigma).to(device, dtype),  # ComfyUI hands the timestep over in this dtype
                encoder_hidden_states=context.to(device, dtype),
                controlnet_cond=broadcast_hint(hint, x.shape[0], chunks), added_cond_kwargs=added, return_dict=False)
        outputs = [self._scaled(s) for s in (*skips, middle)]
        return Residuals(skips=outputs[:-1], middle=outputs[-1])

    def _scaled(self, value: torch.Tensor) -> torch.Tensor:
        if self.global_average_pooling:
            value = value.mean(dim=(2, 3), keepdim=True)  # broadcasts over the block when added
        return value * self.strength


@dataclasses.dataclass
class ControlLoraWeights:
    name: str  # the file's
    tensors: dict[str, torch.Tensor]  # the ones ComfyUI applies, by LDM name as in the file, stored dtype


@dataclasses.dataclass(eq=False)
class ControlLora(ControlNet):
    """A Control-LoRA: runs as the ControlNet it makes of the UNet it is applied to.

    ComfyUI rebuilds that network before every sampling run from the model's current (LoRA-patched) weights;
    here it is built on the first call with a UNet and kept, per UNet and the patches on it, in `networks`,
    which every copy of one loaded file shares. `control_model` is the network of the latest call.
    """
    weights: ControlLoraWeights | None = None
    networks: weakref.WeakKeyDictionary = dataclasses.field(default_factory=weakref.WeakKeyDictionary)

    def _residuals(self, model_sampling, x, sigma, model_conds, chunks) -> Residuals:
        def residuals_for(unet):
            self.control_model = self._network_for(unet)
            return ControlNet._residuals(self, model_sampling, x, sigma, model_conds, chunks)
        return Residuals(pending=(residuals_for,))

    def _network_for(self, unet) -> ControlNetModel:
        patches = self.manager.applied_patches(unet) if self.manager is not None else ()
        built = self.networks.get(unet)
        if built is None or not same_patches(built[0], patches):
            built = self.networks[unet] = (patches, build_control_lora(self.weights, unet))
        return built[1]


@dataclasses.dataclass(eq=False)
class T2IAdapter(ControlBase):
    """The adapter runs once per hint size and batch (ComfyUI caches its features for the whole run)."""

    def _residuals(self, model_sampling, x, sigma, model_conds, chunks) -> Residuals:
        layout: AdapterLayout = self.control_model.layout
        key = ("features", tuple(x.shape), chunks, x.device, x.dtype)
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = self._features(x, chunks)
        blocks, middle = [], None
        for slot, feature in zip(layout.slots, self._cache[key]):
            feature = feature * self.strength
            if slot is None:
                middle = feature
            else:
                blocks += [None] * (slot + 1 - len(blocks))
                blocks[slot] = feature
        return Residuals(blocks=blocks, middle=middle)

    def _features(self, x: torch.Tensor, chunks: int) -> list[torch.Tensor]:
        network = self.control_model
        factor = network.layout.unshuffle
        width = math.ceil(x.shape[3] * HINT_SCALE / factor) * factor
        height = math.ceil(x.shape[2] * HINT_SCALE / factor) * factor
        with self._running():
            parameter = next(network.parameters())
            hint = common_upscale(self.hint, width, height, HINT_UPSCALE, "center")
            hint = hint.to(parameter.device, parameter.dtype)
            if network.layout.hint_channels == 1 and hint.shape[1] > 1:
                hint = hint.mean(dim=1, keepdim=True)
            features = network(broadcast_hint(hint, x.shape[0], chunks))
        return [f.to(x.device, x.dtype) for f in features]


# -- loading ---------------------------------------------------------------------------------------------------


def controlnet_config(spec: UNetSpec, hint_channels: int) -> dict:
    """ControlNetModel keyword arguments for the input half of the UNet `spec` describes."""
    try:
        config = convert.unet_config(spec)
    except ValueError as exc:
        raise CheckpointError(f"unsupported ControlNet layout: {exc}") from None
    return dict({k: v for k, v in config.items() if k in _CONTROLNET_ARGS}, conditioning_channels=hint_channels)


def ldm_controlnet_names(names, config: dict) -> dict[str, str]:
    """{ControlNetModel name: LDM name} for the LDM ControlNet tensor `names` (no prefix): diffusers' converter
    run on the names instead of tensors. Names it has no place for are left out."""
    renamed = convert_controlnet_checkpoint({LDM_CONTROL_PREFIX + n: n for n in names}, config)
    if config.get("addition_embed_type"):  # SDXL's label embedding, which the converter leaves out
        renamed.update(DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"])
    names = set(names)
    return {new: old for new, old in renamed.items() if old in names}


def _ldm_state_dict(tensors: Mapping, prefix: str, config: dict) -> dict:
    view = convert.PrefixView(tensors, prefix)
    return {new: view[old] for new, old in ldm_controlnet_names(view, config).items()}


def _first(shapes: Mapping, suffix: str):
    return next((shape for key, shape in shapes.items() if key.endswith(suffix)), None)


def diffusers_unet_spec(shapes: Mapping, name: str) -> UNetSpec:
    """The UNetSpec of a ControlNet saved with diffusers' names (its down and middle blocks)."""
    keys = list(shapes)
    model_channels = shapes["conv_in.weight"][0]
    levels = count_indices(keys, "down_blocks.{}.resnets.")
    per_level = count_indices(keys, "down_blocks.0.resnets.{}.")
    depths = tuple(count_indices(keys, f"down_blocks.{level}.attentions.{j}.transformer_blocks.{{}}.")
                   for level in range(levels) for j in range(per_level))
    to_k, proj_in = _first(shapes, ".attn2.to_k.weight"), _first(shapes, ".proj_in.weight")
    if to_k is None:
        raise unsupported(name, "ControlNet without cross-attention")
    adm = shapes["add_embedding.linear_1.weight"][1] if "add_embedding.linear_1.weight" in shapes else None
    family = unet_family(adm, to_k[1], len(proj_in) == 2)
    if family is None:
        raise unsupported(name, f"ControlNet with adm_in_channels={adm} and context_dim={to_k[1]}")
    traits = FAMILIES[family]
    return UNetSpec(
        prefix="", in_channels=shapes["conv_in.weight"][1], out_channels=4, model_channels=model_channels,
        channel_mult=tuple(shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0] // model_channels
                           for i in range(levels)),
        num_res_blocks=(per_level,) * levels, transformer_depth=depths, transformer_depth_output=(),
        transformer_depth_middle=count_indices(keys, "mid_block.attentions.0.transformer_blocks.{}."), context_dim=to_k[1],
        use_linear_in_transformer=len(proj_in) == 2, adm_in_channels=adm, num_heads=traits.num_heads,
        num_head_channels=traits.num_head_channels)


def _with_model_weights(tensors: Mapping, prefix: str, unet) -> dict:
    """A "difference" ControlNet's tensors plus the weights of the UNet it was made from, by LDM name."""
    params = dict(unet.named_parameters())
    to_diffusers = convert.ldm_unet_names(params)
    out = {}
    for key in tensors:
        value = tensors[key]
        target = to_diffusers.get(key[len(prefix):]) if key.startswith(prefix) else None
        out[key] = value + params[target].to(value) if target is not None else value
    return out


def _build_controlnet(file, tensors: Mapping, *, diff_unet=None) -> ControlNet:
    shapes, name = file.shapes, file.name
    if "controlnet_cond_embedding.conv_in.weight" in shapes:
        spec = diffusers_unet_spec(shapes, name)
        config = controlnet_config(spec, shapes["controlnet_cond_embedding.conv_in.weight"][1])
        state_of = lambda _: dict(tensors)  # noqa: E731 - already diffusers' names
    else:
        prefix = next(p for p in LDM_PREFIXES if p + "zero_convs.0.0.weight" in shapes)
        if "difference" in shapes:
            if diff_unet is None:
                log.warning("%s is a difference ControlNet, loaded without a model: it will not work well", name)
            else:
                tensors = _with_model_weights(tensors, prefix, diff_unet)
        try:
            _, spec = detect_unet(shapes, prefix, name)
        except (KeyError, IndexError) as exc:
            raise unsupported(name, f"incomplete layer, missing {exc}") from None
        config = controlnet_config(spec, shapes[prefix + "input_hint_block.0.weight"][1])
        state_of = lambda _: _ldm_state_dict(tensors, prefix, config)  # noqa: E731
    network = assemble(lambda: ControlNetModel(**config), state_of, "ControlNet", name)
    stem = os.path.splitext(name)[0]
    return ControlNet(network, global_average_pooling=stem.endswith(("_shuffle", "_shuffle_fp16")))


def control_lora_config(unet, hint_channels: int) -> dict:
    """ControlNetModel keyword arguments for a Control-LoRA applied to the diffusers UNet `unet`."""
    config = {k: v for k, v in unet.config.items() if k in _CONTROLNET_ARGS}
    # ComfyUI's ControlNet always has a middle block: a lone res block when the UNet has none
    config["mid_block_type"] = config.get("mid_block_type") or "UNetMidBlock2D"
    return dict(config, conditioning_channels=hint_channels)


def _misfit(name: str, detail: str) -> CheckpointError:
    return CheckpointError(f"{name}: Control-LoRA does not fit the model it is applied to ({detail})")


def _lora_delta(up: torch.Tensor, down: torch.Tensor, shape) -> torch.Tensor:
    return (up.flatten(start_dim=1) @ down.flatten(start_dim=1)).reshape(shape)


def build_control_lora(weights: ControlLoraWeights, unet) -> ControlNetModel:
    """The ControlNet a Control-LoRA makes of `unet`, on its device and in its dtype: the UNet's weights where
    the network shares its layers, replaced by the file's full tensors, then each ``X.weight`` plus up @ down of
    the file's ``X.up`` / ``X.down``. CheckpointError when the file does not fit this UNet."""
    name = weights.name
    parameter = next(unet.parameters())
    tensors = {k: v.to(parameter.device, parameter.dtype) for k, v in weights.tensors.items()}
    factored = {k.rsplit(".", 1)[0] + ".weight" for k in tensors if k.endswith(LORA_FACTORS)}
    full = {k: v for k, v in tensors.items() if not k.endswith(LORA_FACTORS)}
    config = control_lora_config(unet, tensors["input_hint_block.0.weight"].shape[1])
    names = ldm_controlnet_names(factored | full.keys(), config)
    unplaced = sorted((factored | full.keys()) - set(names.values()))
    if unplaced:
        raise _misfit(name, f"no layer for {unplaced[:8]}{' ...' if len(unplaced) > 8 else ''}")

    def state_of(network) -> dict:
        wanted = network.state_dict().keys()
        # copies: the UNet's weights change under it (other clones' LoRA patches, offloading)
        state = {k: v.detach().clone() for k, v in unet.state_dict().items() if k in wanted}
        state.update({new: full[old] for new, old in names.items() if old in full})
        for new, old in names.items():
            if old not in factored:
                continue
            base = old[:-len(".weight")]
            if new not in state:
                raise _misfit(name, f"the model has no weight for {base}.up/.down")
            up, down = tensors[base + ".up"], tensors[base + ".down"]
            try:
                state[new] = state[new] + _lora_delta(up, down, state[new].shape)
            except RuntimeError as exc:
                raise _misfit(name, f"{base}: {exc}") from None
        return state

    try:
        return assemble(lambda: ControlNetModel(**config), state_of, "Control-LoRA", name)
    except CheckpointError as exc:
        if str(exc).startswith(f"{name}: Control-LoRA does not fit"):
            raise
        raise _misfit(name, str(exc).split(": ", 2)[-1]) from None


def _control_lora_weights(file) -> ControlLoraWeights:
    """The tensors ComfyUI applies: ``.up``, ``.down``, ``.weight`` and ``.bias`` ones without ``__``."""
    if "input_hint_block.0.weight" not in file.shapes:
        raise unsupported(file.name, "Control-LoRA without 'input_hint_block'")
    keep = [k for k in file.shapes
            if k != LORA_MARKER and k.endswith((*LORA_FACTORS, ".weight", ".bias")) and "__" not in k]
    return ControlLoraWeights(file.name, {k: file.read(k) for k in keep})


def load_control_file(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype, *,
                      diff_unet=None) -> ControlBase:
    """A ControlNet (LDM or diffusers keys), Control-LoRA or T2I-Adapter (full, light, SDXL) file, without a hint.

    ControlNets are loaded in `dtype`; adapters in float32, the precision ComfyUI runs them in; Control-LoRAs
    keep their tensors as stored until they meet a UNet. `diff_unet` is the UNet a "difference" ControlNet adds
    its weights to (DiffControlNetLoader).
    """
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        shapes = file.shapes
        if LORA_MARKER in shapes:
            return ControlLora(None, weights=_control_lora_weights(file))
        if "controlnet_cond_embedding.conv_in.weight" in shapes or any(
                p + "zero_convs.0.0.weight" in shapes for p in LDM_PREFIXES):
            return _build_controlnet(file, CastingReader(shapes, file.read, device, dtype), diff_unet=diff_unet)
        names = diffusers_adapter_names(shapes) or {k: k for k in shapes}
        renamed = {new: shapes[old] for new, old in names.items()}
        layout = detect_adapter(renamed)
        if layout is None:
            raise unsupported(file.name, "no ControlNet 'zero_convs' or T2I-Adapter 'body' keys")
        tensors = CastingReader(renamed, lambda k: file.read(names[k]), device, torch.float32)
        network = assemble(lambda: Adapter(layout), lambda _: dict(tensors), "T2I-Adapter", file.name)
        return T2IAdapter(network)
