"""From detected specs to diffusers/transformers configs, and from LDM tensor names to theirs.

The renaming itself is diffusers' single-file code (``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``,
``convert_open_clip_checkpoint``), fed through ``PrefixView`` so it sees the prefix it expects and reads each tensor
once. The configs are built here from the spec: diffusers' own config helper wants the original YAML and tells
SDXL apart by real-size context widths, which the tiny test models do not have.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import torch

from diffusers.loaders.single_file_utils import (
    DIFFUSERS_TO_LDM_MAPPING,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig

from .detect import ADM_FOURIER_WIDTH, TextEncoderSpec, UNetSpec, VaeSpec

# The prefixes diffusers' converters look for.
LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."

# Parts of a transformers-layout CLIP text model that belong in CLIPTextModel (files may also hold a vision tower).
_TEXT_MODEL_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")

CLIP_BOS, CLIP_EOS = 49406, 49407  # the pooled output is read at the first end-of-text token


class PrefixView(Mapping):
    """The entries of ``source`` whose keys start with ``old``, seen with ``new`` in place of ``old``.

    Lookups go straight to ``source``, so a lazily-reading source still reads each tensor only when asked.
    """

    def __init__(self, source: Mapping, old: str, new: str = ""):
        self._source, self._old, self._new = source, old, new
        self._keys = [new + k[len(old):] for k in source if k.startswith(old)]

    def __getitem__(self, key: str):
        if not key.startswith(self._new):
            raise KeyError(key)
        return self._source[self._old + key[len(self._new):]]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.startswith(self._new) and self._old + key[len(self._new):] in self._source

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _level_depth(depths: tuple[int, ...], where: str) -> int:
    if len(set(depths)) > 1:
        raise ValueError(f"{where} transformer depths {list(depths)} differ within one level")
    return depths[0] if depths else 0


def unet_config(spec: UNetSpec) -> dict:
    """UNet2DConditionModel keyword arguments for ``spec``; ValueError for layouts diffusers cannot express."""
    if len(set(spec.num_res_blocks)) != 1:
        raise ValueError(f"res blocks per level {list(spec.num_res_blocks)} are not uniform")
    if spec.transformer_depth_middle in (-1, 0):
        raise ValueError("middle block without a transformer")
    levels = range(len(spec.channel_mult))
    depth_in = [_level_depth(d, "input") for d in spec.input_depths_by_level()]
    depth_out = [_level_depth(d, "output") for d in spec.output_depths_by_level()]
    middle = spec.transformer_depth_middle
    # diffusers gives the middle block the deepest level's depth; a level without attention can carry it.
    if middle > 0 and depth_in[-1] not in (0, middle):
        raise ValueError(f"middle depth {middle} differs from the last level's {depth_in[-1]}")
    layers = [d or 1 for d in depth_in]
    if middle > 0:
        layers[-1] = middle
    heads = [spec.heads(level) for level in levels]
    if 0 in heads:
        raise ValueError(f"levels narrower than one {spec.num_head_channels}-channel attention head")
    config = dict(
        in_channels=spec.in_channels,
        out_channels=spec.out_channels,
        block_out_channels=[spec.model_channels * m for m in spec.channel_mult],
        layers_per_block=spec.num_res_blocks[0],
        down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depth_in],
        up_block_types=["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depth_out)],
        mid_block_type="UNetMidBlock2DCrossAttn" if middle > 0 else None,
        transformer_layers_per_block=layers,
        reverse_transformer_layers_per_block=[d or 1 for d in reversed(depth_out)],
        attention_head_dim=heads,  # diffusers' name for the number of heads
        cross_attention_dim=spec.context_dim,
        use_linear_projection=spec.use_linear_in_transformer,
    )
    if spec.unclip:  # SD2 unCLIP: the label MLP takes the image embedding and its noise-level embedding as given
        config.update(class_embed_type="projection", projection_class_embeddings_input_dim=spec.adm_in_channels)
    elif spec.adm_in_channels is not None:  # SDXL: pooled text + Fourier-embedded size conditions
        config.update(addition_embed_type="text_time", addition_time_embed_dim=ADM_FOURIER_WIDTH,
                      projection_class_embeddings_input_dim=spec.adm_in_channels)
    return config


def vae_config(spec: VaeSpec) -> dict:
    levels = len(spec.channel_mult)
    return dict(
        in_channels=spec.in_channels,
        out_channels=spec.out_channels,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        block_out_channels=[spec.base_channels * m for m in spec.channel_mult],
        layers_per_block=spec.num_res_blocks,
        latent_channels=spec.latent_channels,
        use_quant_conv=spec.use_quant_conv,
        use_post_quant_conv=spec.use_quant_conv,
    )


def text_config(spec: TextEncoderSpec) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.width,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        hidden_act=spec.hidden_act,
        projection_dim=spec.projection_dim or spec.width,
        layer_norm_eps=1e-5,
        bos_token_id=CLIP_BOS,
        eos_token_id=CLIP_EOS,
        attn_implementation="sdpa",
    )


def unet_state_dict(spec: UNetSpec, tensors: Mapping, config: dict) -> dict:
    """diffusers-named UNet tensors from the LDM ones in ``tensors`` (full file keys)."""
    return convert_ldm_unet_checkpoint(PrefixView(tensors, spec.prefix, LDM_UNET_PREFIX), config)


def vae_state_dict(spec: VaeSpec, tensors: Mapping, config: dict) -> dict:
    return convert_ldm_vae_checkpoint(PrefixView(tensors, spec.prefix, LDM_VAE_PREFIX), config)


def text_state_dict(spec: TextEncoderSpec, tensors: Mapping, model) -> dict:
    """transformers-named tensors for ``model`` (a CLIPTextModel, or ...WithProjection when spec has one)."""
    if spec.layout == "open_clip":
        state = convert_open_clip_checkpoint(model, PrefixView(tensors, spec.prefix), prefix="")
    else:
        view = PrefixView(tensors, spec.prefix)
        state = {"text_model." + k: view[k] for k in view
                 if k.startswith(_TEXT_MODEL_PARTS) and not k.endswith("position_ids")}  # a buffer, rebuilt
        if spec.projection_key:
            state["text_projection.weight"] = tensors[spec.projection_key]
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    return state


def text_model_name(name: str) -> str:
    """transformers' full name of a CLIP text-model parameter (``text_model.`` + ..., or ``text_projection.``), the
    names ComfyUI gives them: transformers names the same tensors with or without ``text_model.`` depending on its
    version and the class."""
    return name if name.startswith(("text_model.", "text_projection.")) else "text_model." + name


# The OpenCLIP text tower's ``text_projection`` is the transpose of transformers' projection weight.
OPEN_CLIP_TRANSPOSED = "text_projection"
_OPEN_CLIP_FUSED = {"q_proj": 0, "k_proj": 1, "v_proj": 2}  # row order of OpenCLIP's in_proj


def open_clip_names(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """{OpenCLIP text-tower parameter name: our parameters holding it, stacked by rows} for a transformers CLIP text
    model with parameter names ``names``: the inverse of the renaming ``convert_open_clip_checkpoint`` does, from
    the same diffusers tables (an attention's q / k / v are one ``in_proj``; see OPEN_CLIP_TRANSPOSED)."""
    layers = DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"]
    renames = DIFFUSERS_TO_LDM_MAPPING["openclip"]["transformer"]  # {transformers substring: OpenCLIP substring}
    fused: dict[str, dict[int, str]] = {}
    out = {}
    for name in names:
        full = text_model_name(name)
        if full in layers:
            out[layers[full]] = (name,)
            continue
        original = full
        for theirs, open_clip in renames.items():
            original = original.replace(theirs, open_clip)
        layer, part, kind = original.rsplit(".", 2)
        if part in _OPEN_CLIP_FUSED:
            fused.setdefault(f"transformer.{layer}.in_proj_{kind}", {})[_OPEN_CLIP_FUSED[part]] = name
        else:
            out["transformer." + original] = (name,)
    out.update((original, tuple(parts[i] for i in sorted(parts))) for original, parts in fused.items())
    return out


# diffusers' AutoencoderKL names -> the LDM layout's, as substrings replaced in this order (the mid block's before
# the resnets'); the decoder's levels are numbered the other way round (ldm_vae_names adds those).
_VAE_UNDO_RENAMES = (
    ("mid_block.resnets.0.", "mid.block_1."), ("mid_block.resnets.1.", "mid.block_2."),
    ("mid_block.attentions.0.", "mid.attn_1."), ("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."),
    ("to_v.", "v."), ("to_out.0.", "proj_out."), ("down_blocks.", "down."), (".resnets.", ".block."),
    ("downsamplers.0.", "downsample."), ("upsamplers.0.", "upsample."), ("conv_shortcut.", "nin_shortcut."),
    ("conv_norm_out.", "norm_out."),
)
# The LDM VAE's mid-block attention projections are 1x1 convolutions; diffusers' are linear.
_VAE_CONV_ATTENTION = tuple(f"mid.attn_1.{part}.weight" for part in ("q", "k", "v", "proj_out"))


def ldm_vae_names(names: Iterable[str], config: Mapping) -> dict[str, str]:
    """{LDM VAE parameter name (no prefix): our AutoencoderKL parameter} for a VAE with parameter names ``names``
    and diffusers ``config``; the loader's converter confirms each pairing (see converted_names)."""
    levels = len(config["up_block_types"])
    renames = _VAE_UNDO_RENAMES + tuple((f"up_blocks.{i}.", f"up.{levels - 1 - i}.") for i in range(levels))
    table = converted_names(lambda tensors: convert_ldm_vae_checkpoint(tensors, config), renames, names)
    return {original: ours for original, (ours,) in table.items()}


def ldm_vae_shape(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (our parameter) shaped as the LDM layout's ``name`` holds it."""
    return tensor.reshape(*tensor.shape, 1, 1) if name.endswith(_VAE_CONV_ATTENTION) else tensor


# Parameters of an LDM ResBlock, under the names diffusers' converter renames (norm1, conv1, time_emb_proj, ...).
_LDM_RESBLOCK_PARTS = ("in_layers.0", "in_layers.2", "emb_layers.1", "out_layers.0", "out_layers.3", "skip_connection")


def _indices(names: set[str], prefix: str) -> list[int]:
    return sorted({int(n[len(prefix):].split(".", 1)[0]) for n in names if n.startswith(prefix)})


def ldm_unet_names(diffusers_names: Iterable[str]) -> dict[str, str]:
    """{LDM UNet parameter name: diffusers name} for the parameters of a UNet2DConditionModel (no prefixes).

    The LDM names of the blocks the model has are laid out (ResBlock parts by their LDM names; transformer parts
    keep theirs, so those are taken from the model) and renamed by the same converter that loads checkpoints, run
    on names instead of tensors. Candidates that land on no parameter of the model are dropped.
    """
    names = set(diffusers_names)
    per_level = len(_indices(names, "down_blocks.0.resnets."))
    # what follows "attentions.<i>." in any transformer (depths differ between blocks; extras are dropped below)
    attention_parts = sorted({n.partition(".attentions.")[2].split(".", 1)[1] for n in names if ".attentions." in n})

    def resblock(prefix):
        return [f"{prefix}.{part}.{kind}" for part in _LDM_RESBLOCK_PARTS for kind in ("weight", "bias")]

    def attention(prefix):
        return [f"{prefix}.{part}" for part in attention_parts]

    def conv(prefix):
        return [f"{prefix}.weight", f"{prefix}.bias"]

    ldm = list(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"].values())
    config = {"layers_per_block": per_level}
    if any(n.startswith("add_embedding.") for n in names):
        ldm += DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"].values()
        config["addition_embed_type"] = "text_time"
    if any(n.startswith("class_embedding.") for n in names):
        ldm += DIFFUSERS_TO_LDM_MAPPING["unet"]["class_embed_type"].values()
        config["class_embed_type"] = "projection"
    step = per_level + 1  # LDM blocks per level: the res blocks and a down/upsampler slot
    for level in _indices(names, "down_blocks."):
        for j in range(per_level):
            index = 1 + level * step + j
            ldm += resblock(f"input_blocks.{index}.0") + attention(f"input_blocks.{index}.1")
        if f"down_blocks.{level}.downsamplers.0.conv.weight" in names:
            ldm += conv(f"input_blocks.{1 + level * step + per_level}.0.op")
    ldm += resblock("middle_block.0") + attention("middle_block.1") + resblock("middle_block.2")
    for level in _indices(names, "up_blocks."):
        for j in range(step):
            index = level * step + j
            ldm += resblock(f"output_blocks.{index}.0") + attention(f"output_blocks.{index}.1")
        if f"up_blocks.{level}.upsamplers.0.conv.weight" in names:
            # the upsampler follows the block's transformer when it has one
            slot = 2 if _indices(names, f"up_blocks.{level}.attentions.") else 1
            ldm += conv(f"output_blocks.{level * step + per_level}.{slot}.conv")
    converted = convert_ldm_unet_checkpoint({LDM_UNET_PREFIX + n: n for n in ldm}, config)
    return {old: new for new, old in converted.items() if new in names}


def _tagged_conversion(convert, undo_renames, names, extra) -> tuple[list[str], dict]:
    """(the candidate originals, what ``convert`` makes of tagged stand-ins of them): see converted_names."""
    def undo(name: str) -> str:
        for ours, original in undo_renames:
            name = name.replace(ours, original)
        return name

    candidates = sorted({undo(name) for name in names} | set(extra))
    return candidates, convert({name: torch.arange(3 * i, 3 * i + 3) for i, name in enumerate(candidates)})


def converted_names(convert, undo_renames, names, extra=()) -> dict[str, tuple[str, ...]]:
    """{original-layout parameter name: our parameters holding it, stacked by rows}, as the diffusers single-file
    converter ``convert`` maps them onto a network with parameter names ``names``.

    The candidates are ``names`` with ``undo_renames`` ((ours, original) substrings) applied, plus ``extra``
    (originals the converter needs that no parameter comes from). The converter is run over tagged stand-ins of
    them instead of tensors: three numbers per name, so each third of a weight it splits says which part it
    became. Originals it reorders (halves swapped) or maps onto anything else than parameters are left out.
    """
    ours = set(names)
    candidates, converted = _tagged_conversion(convert, undo_renames, ours, extra)
    parts: dict[str, dict[int, str]] = {}
    wanted: dict[str, int] = {}
    for name, tag in converted.items():
        first = int(tag[0])
        original = candidates[first // 3]
        wanted[original] = 3 // tag.numel()
        if name in ours and torch.equal(tag, torch.arange(first, first + tag.numel())):
            parts.setdefault(original, {})[first % 3] = name
    return {original: tuple(found[i] for i in sorted(found)) for original, found in parts.items()
            if len(found) == wanted[original]}


def parameter_origins(convert, undo_renames, names, extra=()) -> dict[str, str]:
    """{our parameter: the original-layout parameter it is, or is rows of}, reordered ones included (see
    converted_names for the arguments)."""
    ours = set(names)
    candidates, converted = _tagged_conversion(convert, undo_renames, ours, extra)
    return {name: candidates[int(tag[0]) // 3] for name, tag in converted.items() if name in ours}
