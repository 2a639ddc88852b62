"""Z-Image (Tongyi-MAI's single-stream DiT, e.g. Z-Image Turbo) behind ComfyUI's MODEL contract.

Files are the original layout that ComfyUI loads (``x_embedder``, fused ``attention.qkv``, ``final_layer``, ...,
bare or under ``model.diffusion_model.``); diffusers' own single-file converter maps them onto
``ZImageTransformer2DModel``. Sizes are read off the shapes (width from the patch embedder, head width from the
per-head q norm, depth from the layer count); what shapes cannot tell is Z-Image's: 2x2 patches, RoPE axes split
32/48/48 of a 128-wide head, base 256.

Sampling is rectified flow (``FlowModelSampling``, shift 3 by default, timestep = sigma); the network's own time
runs the other way (1 - sigma) and it predicts the negated velocity. Latents are the 16-channel FLUX VAE's,
shifted and scaled as ComfyUI's Flux latent format does.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..sampling.model_sampling import FlowModelSampling
from .convert import converted_names, parameter_origins as converted_origins
from .detect import Shapes, count_indices, unrecognised
from .diffusion import DiffusionModel, refuse_unet_adapters
from .flux import LATENT_SCALE, LATENT_SHIFT  # Z-Image uses the FLUX VAE
from .load import CastingReader, assemble

PREFIXES = ("model.diffusion_model.", "")
PATCH = 2
HEAD_AXES = {128: (32, 48, 48)}  # head width -> RoPE dims per (caption/frame, height, width) axis
DEFAULT_SHIFT = 3.0


@dataclass(frozen=True)
class ZImageSpec:
    prefix: str
    in_channels: int
    dim: int
    num_layers: int
    num_refiner_layers: int
    num_heads: int
    caption_dim: int


def find_prefix(shapes: Shapes) -> str | None:
    return next((p for p in PREFIXES if p + "cap_embedder.1.weight" in shapes
                 and p + "layers.0.attention.qkv.weight" in shapes), None)


def detect_z_image(shapes: Shapes, name: str) -> ZImageSpec:
    prefix = find_prefix(shapes)
    if prefix is None:
        raise unrecognised(name, "no Z-Image 'cap_embedder' / 'layers.0.attention.qkv' keys")
    try:
        dim, patch_width = shapes[prefix + "x_embedder.weight"]
        head_dim = shapes[prefix + "layers.0.attention.q_norm.weight"][0]
        keys = [k for k in shapes if k.startswith(prefix)]
        spec = ZImageSpec(
            prefix=prefix, in_channels=patch_width // (PATCH * PATCH), dim=dim,
            num_layers=count_indices(keys, prefix + "layers.{}."),
            num_refiner_layers=count_indices(keys, prefix + "noise_refiner.{}."),
            num_heads=dim // head_dim, caption_dim=shapes[prefix + "cap_embedder.1.weight"][1])
    except (KeyError, ValueError) as exc:
        raise unrecognised(name, f"incomplete Z-Image model, missing {exc}") from None
    if head_dim not in HEAD_AXES:
        raise unrecognised(name, f"Z-Image with {head_dim}-wide attention heads")
    return spec


def z_image_config(spec: ZImageSpec) -> dict:
    head_dim = spec.dim // spec.num_heads
    return dict(all_patch_size=(PATCH,), all_f_patch_size=(1,), in_channels=spec.in_channels, dim=spec.dim,
                n_layers=spec.num_layers, n_refiner_layers=spec.num_refiner_layers, n_heads=spec.num_heads,
                n_kv_heads=spec.num_heads, cap_feat_dim=spec.caption_dim, axes_dims=list(HEAD_AXES[head_dim]))


def build_z_image(spec: ZImageSpec, tensors, *, name: str):
    from diffusers import ZImageTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    def state_of(model):
        own = {key[len(spec.prefix):]: tensors[key] for key in tensors if key.startswith(spec.prefix)}
        return convert_z_image_transformer_checkpoint_to_diffusers(own)

    return assemble(lambda: ZImageTransformer2DModel(**z_image_config(spec)), state_of, "Z-Image", name)


def load_z_image(file, device: torch.device, dtype: torch.dtype, *, keep_fp8: bool = False):
    """(ZImageSpec, transformer) of an open Z-Image file (``load.open_checkpoint``)."""
    spec = detect_z_image(file.shapes, file.name)
    reader = CastingReader(file.shapes, file.read, device, dtype, keep_fp8=keep_fp8)  # see cast.narrow_storage
    return spec, build_z_image(spec, reader, name=file.name)


class ZImageModel(DiffusionModel):
    """A Z-Image transformer as MODEL (``unet`` holds the network, so the model manager and LoRA patches apply)."""

    latent_channels = 16

    def __init__(self, transformer, *, manager=None, name: str = ""):
        super().__init__(transformer, "z_image", "eps", LATENT_SCALE, latent_shift=LATENT_SHIFT, manager=manager,
                         name=name)
        self.model_sampling = FlowModelSampling(shift=DEFAULT_SHIFT, multiplier=1.0)

    def extra_conds(self, cond: torch.Tensor, options: dict, noise: torch.Tensor, **unused) -> dict:
        refuse_unet_adapters(options, "Z-Image")
        width = self.unet.config.cap_feat_dim
        if cond.shape[-1] != width:
            raise ValueError(f"this conditioning is {cond.shape[-1]} wide but Z-Image takes {width}-wide text "
                             "features: encode the prompt with its Qwen3 text encoder (CLIPLoader type lumina2)")
        return {"c_crossattn": cond}

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, *, c_crossattn: torch.Tensor,
                    **unused) -> torch.Tensor:
        ms = self.model_sampling
        sigma = sigma.to(x.device)
        dtype = self.dtype
        with self.manager.running(self) if self.manager else contextlib.nullcontext():
            # One frame per image: the network takes [C, F, H, W] items and per-item caption features.
            images = list(x.to(dtype).unsqueeze(2).unbind(0))
            captions = list(c_crossattn.to(x.device, dtype).unbind(0))
            time = (1.0 - ms.timestep(sigma)).to(dtype)
            output = self.unet(images, time, captions, return_dict=False)[0]
        velocity = -torch.stack(output).squeeze(2).float()
        return ms.calculate_denoised(sigma, velocity, x)


# The converter's renames undone (diffusers' parts -> the original layout's), to list the original names a
# network's parameters come from; ``convert.converted_names`` keeps only those the converter maps back onto them.
_UNDO_RENAMES = (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
                 (".attention.to_out.0.", ".attention.out."), (".attention.norm_q.", ".attention.q_norm."),
                 (".attention.norm_k.", ".attention.k_norm."), (".attention.to_q.", ".attention.qkv."),
                 (".attention.to_k.", ".attention.qkv."), (".attention.to_v.", ".attention.qkv."))
_OWN_NAMES = ("all_x_embedder.2-1.weight", "cap_embedder.1.weight")  # parameters only this transformer has


def is_z_image_network(names) -> bool:
    """Whether parameter names ``names`` are a ZImageTransformer2DModel's."""
    return all(name in names for name in _OWN_NAMES)


def original_names(names) -> dict[str, tuple[str, ...]]:
    """{original-layout parameter name: our parameters holding it, stacked by rows} for a ZImageTransformer2DModel
    with parameter names ``names`` (a fused ``attention.qkv`` is its ``to_q``, ``to_k`` and ``to_v``)."""
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    return converted_names(convert_z_image_transformer_checkpoint_to_diffusers, _UNDO_RENAMES, names)


def parameter_origins(names) -> dict[str, str]:
    """{our parameter: the original-layout parameter it is (or is rows of)} for a ZImageTransformer2DModel with
    parameter names ``names``."""
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    return converted_origins(convert_z_image_transformer_checkpoint_to_diffusers, _UNDO_RENAMES, names)
