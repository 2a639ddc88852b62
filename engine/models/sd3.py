"""Stable Diffusion 3 / 3.5 (Stability's MMDiT: SD3 medium, SD3.5 large / large turbo / medium) behind MODEL.

Files are the original layout ComfyUI loads (``x_embedder.proj``, ``pos_embed``, ``joint_blocks.N.{x,context}_block``,
``final_layer``, bare or under ``model.diffusion_model.``); diffusers' single-file converter maps them onto
``SD3Transformer2DModel``. Sizes are read off the shapes: 64-wide heads, one per 64 of width (the MMDiT's
depth), the largest position grid from ``pos_embed``, SD3.5 medium's second attention ("attn2") layers and
SD3.5 large's q/k RMS norms from their keys.

Sampling is rectified flow, shift 3 by default (ModelSamplingSD3 sets it), timestep = 1000 * sigma, the network
predicting the velocity ``noise - x0``. Latents are the SD3 VAE's 16 channels, shifted and scaled.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from ..sampling.model_sampling import FlowModelSampling
from .convert import converted_names, parameter_origins as converted_origins
from .detect import Shapes, count_indices, unrecognised
from .diffusion import DiffusionModel, pad_to_patches, refuse_unet_adapters
from .load import CastingReader, assemble

PREFIXES = ("model.diffusion_model.", "")
HEAD_DIM = 64
DEFAULT_SHIFT = 3.0
LATENT_SCALE, LATENT_SHIFT = 1.5305, 0.0609  # the SD3 VAE's latent statistics


@dataclass(frozen=True)
class SD3Spec:
    prefix: str
    in_channels: int
    out_channels: int
    patch: int
    hidden: int
    num_layers: int
    pos_embed_max_size: int
    context_dim: int
    pooled_dim: int
    dual_attention_layers: tuple[int, ...]
    qk_norm: bool


def find_prefix(shapes: Shapes) -> str | None:
    return next((p for p in PREFIXES if p + "joint_blocks.0.x_block.attn.qkv.weight" in shapes
                 and p + "x_embedder.proj.weight" in shapes), None)


def detect_sd3(shapes: Shapes, name: str) -> SD3Spec:
    prefix = find_prefix(shapes)
    if prefix is None:
        raise unrecognised(name, "no SD3 'joint_blocks.0.x_block.attn.qkv' / 'x_embedder.proj' keys")
    try:
        hidden, in_channels, patch, _ = shapes[prefix + "x_embedder.proj.weight"]
        keys = [k for k in shapes if k.startswith(prefix)]
        spec = SD3Spec(
            prefix=prefix, in_channels=in_channels, patch=patch, hidden=hidden,
            out_channels=shapes[prefix + "final_layer.linear.weight"][0] // (patch * patch),
            num_layers=count_indices(keys, prefix + "joint_blocks.{}."),
            pos_embed_max_size=round(math.sqrt(shapes[prefix + "pos_embed"][1])),
            context_dim=shapes[prefix + "context_embedder.weight"][1],
            pooled_dim=shapes[prefix + "y_embedder.mlp.0.weight"][1],
            dual_attention_layers=tuple(sorted({int(k[len(prefix):].split(".")[1]) for k in keys
                                                if ".x_block.attn2." in k})),
            qk_norm=prefix + "joint_blocks.0.x_block.attn.ln_q.weight" in shapes)
    except (KeyError, ValueError, IndexError) as exc:
        raise unrecognised(name, f"incomplete SD3 model, missing {exc}") from None
    if hidden % HEAD_DIM:
        raise unrecognised(name, f"SD3 model {hidden} wide (not a multiple of its {HEAD_DIM}-wide heads)")
    return spec


def sd3_config(spec: SD3Spec) -> dict:
    return dict(sample_size=128, patch_size=spec.patch, in_channels=spec.in_channels, num_layers=spec.num_layers,
                attention_head_dim=HEAD_DIM, num_attention_heads=spec.hidden // HEAD_DIM,
                joint_attention_dim=spec.context_dim, caption_projection_dim=spec.hidden,
                pooled_projection_dim=spec.pooled_dim, out_channels=spec.out_channels,
                pos_embed_max_size=spec.pos_embed_max_size, dual_attention_layers=spec.dual_attention_layers,
                qk_norm="rms_norm" if spec.qk_norm else None)


def build_sd3(spec: SD3Spec, tensors, *, name: str):
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    def state_of(model):
        own = {key[len(spec.prefix):]: tensors[key] for key in tensors if key.startswith(spec.prefix)
               and not key.endswith(".scale_weight")}
        return convert_sd3_transformer_checkpoint_to_diffusers(own)

    return assemble(lambda: SD3Transformer2DModel(**sd3_config(spec)), state_of, "SD3", name)


def load_sd3(file, device: torch.device, dtype: torch.dtype, *, keep_fp8: bool = False):
    """(SD3Spec, transformer) of an open SD3 file (``load.open_checkpoint``)."""
    spec = detect_sd3(file.shapes, file.name)
    reader = CastingReader(file.shapes, file.read, device, dtype, keep_fp8=keep_fp8)  # see cast.narrow_storage
    return spec, build_sd3(spec, reader, name=file.name)


class SD3Model(DiffusionModel):
    """An MMDiT as MODEL (``unet`` holds the network, so the model manager and LoRA patches apply)."""

    latent_channels = 16

    def __init__(self, transformer, *, manager=None, name: str = ""):
        super().__init__(transformer, "sd3", "eps", LATENT_SCALE, latent_shift=LATENT_SHIFT, manager=manager,
                         name=name)
        self.model_sampling = FlowModelSampling(shift=DEFAULT_SHIFT, multiplier=1000.0)

    def extra_conds(self, cond: torch.Tensor, options: dict, noise: torch.Tensor, **unused) -> dict:
        refuse_unet_adapters(options, "SD3")
        config = self.unet.config
        if cond.shape[-1] > config.joint_attention_dim:
            raise ValueError(f"this conditioning is {cond.shape[-1]} wide but this SD3 model takes "
                             f"{config.joint_attention_dim}-wide text features: encode the prompt with its CLIP-L, "
                             "CLIP-G and T5-XXL text encoders (TripleCLIPLoader, or the checkpoint's CLIP)")
        # CLIP-only conditioning is narrower than T5's width; the rest is zeros, as ComfyUI pads it.
        cond = torch.nn.functional.pad(cond, (0, config.joint_attention_dim - cond.shape[-1]))
        pooled = options.get("pooled_output")
        if pooled is None:
            pooled = torch.zeros((1, config.pooled_projection_dim))
        return {"c_crossattn": cond, "pooled": pooled[:, :config.pooled_projection_dim]}

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, *, c_crossattn: torch.Tensor, pooled: torch.Tensor,
                    **unused) -> torch.Tensor:
        ms = self.model_sampling
        sigma = sigma.to(x.device)
        dtype = self.dtype
        height, width = x.shape[-2:]
        with self.manager.running(self) if self.manager else contextlib.nullcontext():
            output = self.unet(
                pad_to_patches(x, self.unet.config.patch_size).to(dtype),
                encoder_hidden_states=c_crossattn.to(x.device, dtype), pooled_projections=pooled.to(x.device, dtype),
                timestep=ms.timestep(sigma).to(dtype), return_dict=False)[0]
        return ms.calculate_denoised(sigma, output.float()[..., :height, :width], x)


# The converter's renames undone (diffusers' parts -> the original layout's), applied in this order: the candidate
# original names of a network's parameters, which ``convert.converted_names`` checks against the converter.
_UNDO_RENAMES = (
    ("transformer_blocks.", "joint_blocks."),
    (".attn.to_q.", ".x_block.attn.qkv."), (".attn.to_k.", ".x_block.attn.qkv."), (".attn.to_v.", ".x_block.attn.qkv."),
    (".attn.add_q_proj.", ".context_block.attn.qkv."), (".attn.add_k_proj.", ".context_block.attn.qkv."),
    (".attn.add_v_proj.", ".context_block.attn.qkv."),
    (".attn2.to_q.", ".x_block.attn2.qkv."), (".attn2.to_k.", ".x_block.attn2.qkv."),
    (".attn2.to_v.", ".x_block.attn2.qkv."),
    (".attn.to_out.0.", ".x_block.attn.proj."), (".attn.to_add_out.", ".context_block.attn.proj."),
    (".attn2.to_out.0.", ".x_block.attn2.proj."),
    (".attn.norm_q.", ".x_block.attn.ln_q."), (".attn.norm_k.", ".x_block.attn.ln_k."),
    (".attn.norm_added_q.", ".context_block.attn.ln_q."), (".attn.norm_added_k.", ".context_block.attn.ln_k."),
    (".attn2.norm_q.", ".x_block.attn2.ln_q."), (".attn2.norm_k.", ".x_block.attn2.ln_k."),
    (".norm1.linear.", ".x_block.adaLN_modulation.1."),
    (".norm1_context.linear.", ".context_block.adaLN_modulation.1."),
    (".ff.net.0.proj.", ".x_block.mlp.fc1."), (".ff.net.2.", ".x_block.mlp.fc2."),
    (".ff_context.net.0.proj.", ".context_block.mlp.fc1."), (".ff_context.net.2.", ".context_block.mlp.fc2."),
    ("pos_embed.proj.", "x_embedder.proj."),
    ("time_text_embed.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
    ("time_text_embed.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
    ("time_text_embed.text_embedder.linear_1.", "y_embedder.mlp.0."),
    ("time_text_embed.text_embedder.linear_2.", "y_embedder.mlp.2."),
    ("proj_out.", "final_layer.linear."), ("norm_out.linear.", "final_layer.adaLN_modulation.1."))
_POSITIONS = "pos_embed"  # the position grid, which the converter needs; a buffer of ours, not a parameter
_OWN_NAMES = ("pos_embed.proj.weight", "context_embedder.weight", "transformer_blocks.0.norm1_context.linear.weight")


def is_sd3_network(names) -> bool:
    """Whether parameter names ``names`` are an SD3Transformer2DModel's."""
    return all(name in names for name in _OWN_NAMES)


def original_names(names) -> dict[str, tuple[str, ...]]:
    """{original-layout parameter name: our parameters holding it, stacked by rows} for an SD3Transformer2DModel
    with parameter names ``names`` (a fused ``qkv`` is its to_q / to_k / to_v or add_q_proj / add_k_proj /
    add_v_proj). The final modulations whose halves the converter swaps (``final_layer`` and the last text block's
    ``adaLN_modulation``) are left out: a change to them cannot be split by rows."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    return converted_names(convert_sd3_transformer_checkpoint_to_diffusers, _UNDO_RENAMES, names, (_POSITIONS,))


def parameter_origins(names) -> dict[str, str]:
    """{our parameter: the original-layout parameter it is (or is rows of)} for an SD3Transformer2DModel with
    parameter names ``names``, the swapped final modulations included."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    return converted_origins(convert_sd3_transformer_checkpoint_to_diffusers, _UNDO_RENAMES, names, (_POSITIONS,))
