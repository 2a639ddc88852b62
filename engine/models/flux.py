"""FLUX.1 (Black Forest Labs' double/single-stream DiT: dev, schnell and their fine-tunes) behind the MODEL contract.

Files are the original layout ComfyUI loads (``img_in``, ``double_blocks.N.img_attn.qkv``, ``single_blocks.N.linear1``,
``final_layer``, ..., bare or under ``model.diffusion_model.``); ``ORIGINAL_TO_DIFFUSERS`` maps them onto diffusers'
``FluxTransformer2DModel`` (diffusers' own converter assumes the full 3072 width, so it cannot load other sizes).
Sizes are read off the shapes; the 2x2 patches and the RoPE split of a 128-wide head (16/56/56) are FLUX's.

dev-style models (with a guidance embedder) sample with ComfyUI's exponential time shift (``FluxModelSampling``,
mu 1.15 unless ModelSamplingFlux sets it from the image size) and take the FluxGuidance value as an input;
schnell-style ones (no guidance embedder) use plain rectified flow without shift. Both predict the velocity
``noise - x0`` at timestep sigma. Latents are the 16-channel FLUX VAE's, packed into 2x2 patches as tokens.

Variants read the conditioning's extra inputs as ComfyUI does: Canny / Depth models (32 input channels) take the
"concat_latent_image" beside the noisy latent, Fill models (96) also the mask as 64 channels (each 8x8 pixel block of
a latent pixel); Kontext models take "reference_latents" as extra image tokens, placed by "reference_latents_method".
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Mapping

import torch

from ..resize import common_upscale
from ..sampling.model_sampling import FlowModelSampling, FluxModelSampling
from .detect import Shapes, count_indices, unrecognised
from .diffusion import DiffusionModel, fit_to_latent, pad_to_patches, refuse_unet_adapters, stretch_batch
from .load import CastingReader, assemble

PREFIXES = ("model.diffusion_model.", "")
PATCH = 2
HEAD_AXES = {128: (16, 56, 56)}  # head width -> RoPE dims per (text index, row, column) axis
DEFAULT_GUIDANCE = 3.5  # what the model is given when no FluxGuidance node set a value (as ComfyUI)
DEV_SHIFT = 1.15
# Input channels: the latent alone; + the image latent (Canny, Depth); + the image latent and the 8x8 mask (Fill).
VARIANT_CHANNELS = (16, 32, 96)
LATENT_SCALE, LATENT_SHIFT = 0.3611, 0.1159  # the FLUX VAE's latent statistics

# Original module -> diffusers module(s). A fused original weight is split by rows in the listed order; the
# sizes come from the diffusers model's own parameters.
_TOP = {"img_in": "x_embedder", "txt_in": "context_embedder",
        "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
        "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
        "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
        "final_layer.linear": "proj_out", "final_layer.adaLN_modulation.1": "norm_out.linear"}
_DOUBLE = {"img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
           "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
           "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
           "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
           "img_attn.norm.query_norm": "attn.norm_q", "img_attn.norm.key_norm": "attn.norm_k",
           "txt_attn.norm.query_norm": "attn.norm_added_q", "txt_attn.norm.key_norm": "attn.norm_added_k",
           "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
           "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2"}
_SINGLE = {"modulation.lin": "norm.linear", "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
           "linear2": "proj_out", "norm.query_norm": "attn.norm_q", "norm.key_norm": "attn.norm_k"}
# The final modulation's halves are (shift, scale) in the original and (scale, shift) in diffusers.
_SWAPPED_HALVES = "norm_out.linear"
_SUFFIXES = {"weight": "weight", "bias": "bias"}
_NORM_SUFFIXES = {"scale": "weight"}  # RMS norm gains are ``.scale`` originally


def _suffixes(original: str) -> dict[str, str]:
    return _NORM_SUFFIXES if original.endswith("_norm") else _SUFFIXES


@dataclass(frozen=True)
class FluxSpec:
    prefix: str
    in_channels: int  # 16, or more for the variants that take an image (and mask) beside the latent
    out_channels: int
    hidden: int
    num_layers: int
    num_single_layers: int
    num_heads: int
    context_dim: int
    pooled_dim: int
    guidance: bool


def find_prefix(shapes: Shapes) -> str | None:
    return next((p for p in PREFIXES if p + "double_blocks.0.img_attn.qkv.weight" in shapes
                 and p + "img_in.weight" in shapes), None)


def detect_flux(shapes: Shapes, name: str) -> FluxSpec:
    prefix = find_prefix(shapes)
    if prefix is None:
        raise unrecognised(name, "no FLUX 'img_in' / 'double_blocks.0.img_attn.qkv' keys")
    try:
        hidden, patch_width = shapes[prefix + "img_in.weight"]
        head_dim = shapes[prefix + "double_blocks.0.img_attn.norm.query_norm.scale"][0]
        keys = [k for k in shapes if k.startswith(prefix)]
        spec = FluxSpec(
            prefix=prefix, in_channels=patch_width // (PATCH * PATCH), hidden=hidden,
            out_channels=shapes[prefix + "final_layer.linear.weight"][0] // (PATCH * PATCH),
            num_layers=count_indices(keys, prefix + "double_blocks.{}."),
            num_single_layers=count_indices(keys, prefix + "single_blocks.{}."), num_heads=hidden // head_dim,
            context_dim=shapes[prefix + "txt_in.weight"][1], pooled_dim=shapes[prefix + "vector_in.in_layer.weight"][1],
            guidance=prefix + "guidance_in.in_layer.weight" in shapes)
    except (KeyError, ValueError) as exc:
        raise unrecognised(name, f"incomplete FLUX model, missing {exc}") from None
    if head_dim not in HEAD_AXES:
        raise unrecognised(name, f"FLUX model with {head_dim}-wide attention heads")
    if spec.out_channels != 16 or spec.in_channels not in VARIANT_CHANNELS:
        raise unrecognised(name, f"FLUX model with {spec.in_channels} input / {spec.out_channels} output channels")
    return spec


def flux_config(spec: FluxSpec) -> dict:
    head_dim = spec.hidden // spec.num_heads
    return dict(patch_size=1, in_channels=spec.in_channels * PATCH * PATCH,
                out_channels=spec.out_channels * PATCH * PATCH, num_layers=spec.num_layers,
                num_single_layers=spec.num_single_layers, attention_head_dim=head_dim,
                num_attention_heads=spec.num_heads, joint_attention_dim=spec.context_dim,
                pooled_projection_dim=spec.pooled_dim, guidance_embeds=spec.guidance,
                axes_dims_rope=HEAD_AXES[head_dim])


def original_modules(num_layers: int, num_single_layers: int, guidance: bool) -> dict[str, tuple[str, ...]]:
    """{original module: the diffusers modules it becomes, in row order} for a model of that many blocks."""
    table = {k: (v,) for k, v in _TOP.items() if guidance or not k.startswith("guidance_in.")}
    for blocks, count, theirs, ours in (("double_blocks", num_layers, _DOUBLE, "transformer_blocks"),
                                        ("single_blocks", num_single_layers, _SINGLE, "single_transformer_blocks")):
        for i in range(count):
            for original, targets in theirs.items():
                targets = (targets,) if isinstance(targets, str) else targets
                table[f"{blocks}.{i}.{original}"] = tuple(f"{ours}.{i}.{t}" for t in targets)
    return table


def diffusers_state(spec: FluxSpec, tensors, wanted: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The file's tensors under ``FluxTransformer2DModel`` names (``wanted``: its parameter shapes); fused weights
    are split into row views, so no weight is copied."""
    state = {}
    for original, targets in original_modules(spec.num_layers, spec.num_single_layers, spec.guidance).items():
        for suffix, ours in _suffixes(original).items():
            key = f"{spec.prefix}{original}.{suffix}"
            if key not in tensors:
                continue
            tensor = tensors[key]
            if targets[0] == _SWAPPED_HALVES:
                shift, scale = tensor.chunk(2)
                tensor = torch.cat((scale, shift))
            sizes = [wanted.get(f"{t}.{ours}", torch.Size([0]))[0] for t in targets]
            if sum(sizes) != tensor.shape[0]:  # a mismatch is left for the name check to report
                state[f"{targets[0]}.{ours}"] = tensor
                continue
            for target, part in zip(targets, tensor.split(sizes)):
                state[f"{target}.{ours}"] = part
    return state


def build_flux(spec: FluxSpec, tensors, *, name: str):
    from diffusers import FluxTransformer2DModel

    return assemble(lambda: FluxTransformer2DModel(**flux_config(spec)),
                    lambda model: diffusers_state(spec, tensors, {k: v.shape for k, v in model.state_dict().items()}),
                    "FLUX", name)


def load_flux(file, device: torch.device, dtype: torch.dtype, *, keep_fp8: bool = False):
    """(FluxSpec, transformer) of an open FLUX file (``load.open_checkpoint``)."""
    spec = detect_flux(file.shapes, file.name)
    reader = CastingReader(file.shapes, file.read, device, dtype, keep_fp8=keep_fp8)  # see cast.narrow_storage
    return spec, build_flux(spec, reader, name=file.name)


def pack(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] (H, W even) -> [B, H/2 * W/2, C * 4] patch tokens, rows first."""
    b, c, h, w = x.shape
    return x.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5).reshape(
        b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    b = tokens.shape[0]
    h, w = height // PATCH, width // PATCH
    return tokens.view(b, h, w, channels, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5).reshape(b, channels, height, width)


def image_ids(height: int, width: int, device: torch.device, index: int = 0, row: int = 0,
              column: int = 0) -> torch.Tensor:
    """Position ids [(H/2) * (W/2), 3] of the patch tokens of an H x W latent: (index, row, column), rows and
    columns counted in patches from ``row`` / ``column``."""
    rows = torch.arange(height // PATCH, device=device, dtype=torch.float32) + row
    columns = torch.arange(width // PATCH, device=device, dtype=torch.float32) + column
    grid = torch.stack(torch.meshgrid(rows, columns, indexing="ij"), dim=-1).reshape(-1, 2)
    return torch.cat((torch.full_like(grid[:, :1], index), grid), dim=1)


def reference_tokens(references: list[torch.Tensor], method: str, height: int, width: int):
    """(tokens [B, N, 64], ids [N, 3]) of Kontext reference latents (model space) for a latent of ``height`` x
    ``width``, placed as ComfyUI places them: "offset" (default) puts each next to the previous ones at index 1,
    "index" gives each its own index, "uxo" puts them beyond the generated image at index 0."""
    tokens, ids = [], []
    covered_h = covered_w = index = 0
    for ref in references:
        ref_h, ref_w = ref.shape[-2:]
        if method == "index":
            index, top, left = index + 1, 0, 0
        elif method == "uxo":
            top, left = -(-height // PATCH) * PATCH + covered_h, -(-width // PATCH) * PATCH + covered_w
            covered_h, covered_w = covered_h + ref_h, covered_w + ref_w
        else:
            index, top, left = 1, 0, 0
            if ref_h + covered_h > ref_w + covered_w:
                left = covered_w
            else:
                top = covered_h
            covered_h, covered_w = max(covered_h, ref_h + top), max(covered_w, ref_w + left)
        padded = pad_to_patches(ref, PATCH)
        tokens.append(pack(padded))
        ids.append(image_ids(*padded.shape[-2:], ref.device, index, (top + 1) // PATCH, (left + 1) // PATCH))
    return torch.cat(tokens, dim=1), torch.cat(ids)


class FluxModel(DiffusionModel):
    """A FLUX transformer as MODEL (``unet`` holds the network, so the model manager and LoRA patches apply)."""

    latent_channels = 16

    def __init__(self, transformer, *, manager=None, name: str = ""):
        super().__init__(transformer, "flux", "eps", LATENT_SCALE, latent_shift=LATENT_SHIFT, manager=manager,
                         name=name)
        self.guidance_embed = bool(transformer.config.guidance_embeds)
        self.model_sampling = FluxModelSampling(DEV_SHIFT) if self.guidance_embed \
            else FlowModelSampling(shift=1.0, multiplier=1.0)

    def extra_conds(self, cond: torch.Tensor, options: dict, noise: torch.Tensor, *, denoise_mask=None,
                    **unused) -> dict:
        refuse_unet_adapters(options, "FLUX")
        config = self.unet.config
        if cond.shape[-1] != config.joint_attention_dim:
            raise ValueError(f"this conditioning is {cond.shape[-1]} wide but this FLUX model takes "
                             f"{config.joint_attention_dim}-wide text features: encode the prompt with its CLIP-L + "
                             "T5-XXL text encoders (DualCLIPLoader type flux)")
        pooled = options.get("pooled_output")
        if pooled is None:
            pooled = torch.zeros((1, config.pooled_projection_dim))
        out = {"c_crossattn": cond, "pooled": pooled[:, :config.pooled_projection_dim]}
        guidance = options.get("guidance", DEFAULT_GUIDANCE)
        if self.guidance_embed and guidance is not None:
            out["guidance"] = torch.tensor([float(guidance)])
        if config.in_channels > config.out_channels:
            out["c_concat"] = self._concat(options, noise, denoise_mask)
        if options.get("reference_latents"):
            refs = [self.process_latent_in(ref.to(noise)) for ref in options["reference_latents"]]
            out["ref_tokens"], ids = reference_tokens(refs, options.get("reference_latents_method", "offset"),
                                                      *noise.shape[-2:])
            out["ref_ids"] = ids.unsqueeze(0)  # one set for the batch (the batching code repeats it per row)
        return out

    def _concat(self, options: dict, noise: torch.Tensor, denoise_mask) -> torch.Tensor:
        """The extra input channels: the image latent (model space, zeros without one) for Canny / Depth models,
        followed by the mask as 64 channels (each latent pixel's 8x8 pixels, all ones without one) for Fill."""
        batch, _, height, width = noise.shape
        image = options.get("concat_latent_image")
        image = torch.zeros_like(noise) if image is None else self.process_latent_in(fit_to_latent(image, noise))
        if self.unet.config.in_channels <= 2 * self.unet.config.out_channels:
            return image
        mask = options.get("concat_mask", denoise_mask)
        mask = torch.ones_like(noise[:, :1]) if mask is None else mask.to(noise).reshape(-1, 1, *mask.shape[-2:])
        mask = common_upscale(mask.mean(dim=1, keepdim=True), width * 8, height * 8, "bilinear", "center")
        mask = mask.view(-1, height, 8, width, 8).permute(0, 2, 4, 1, 3).reshape(-1, 64, height, width)
        return torch.cat((image, stretch_batch(mask, batch)), dim=1)

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, *, c_crossattn: torch.Tensor, pooled: torch.Tensor,
                    guidance=None, c_concat=None, ref_tokens=None, ref_ids=None, **unused) -> torch.Tensor:
        ms = self.model_sampling
        sigma = sigma.to(x.device)
        dtype = self.dtype
        height, width = x.shape[-2:]
        inputs = x if c_concat is None else torch.cat((x, c_concat.to(x)), dim=1)
        padded = pad_to_patches(inputs, PATCH)
        tokens, ids = pack(padded.to(dtype)), image_ids(*padded.shape[-2:], x.device)
        generated = tokens.shape[1]
        if ref_tokens is not None:
            tokens = torch.cat((tokens, ref_tokens.to(x.device, dtype)), dim=1)
            ids = torch.cat((ids, ref_ids[0].to(x.device)))
        with self.manager.running(self) if self.manager else contextlib.nullcontext():
            text = c_crossattn.to(x.device, dtype)
            output = self.unet(
                tokens, encoder_hidden_states=text, pooled_projections=pooled.to(x.device, dtype),
                timestep=ms.timestep(sigma).to(dtype), img_ids=ids,
                txt_ids=torch.zeros(text.shape[1], 3, device=x.device),
                guidance=None if guidance is None else guidance.to(x.device, dtype), return_dict=False)[0]
        velocity = unpack(output[:, :generated].float(), x.shape[1], *padded.shape[-2:])[..., :height, :width]
        return ms.calculate_denoised(sigma, velocity, x)


_OWN_NAMES = ("x_embedder.weight", "context_embedder.weight", "single_transformer_blocks.0.proj_mlp.weight")


def is_flux_network(names) -> bool:
    """Whether parameter names ``names`` are a FluxTransformer2DModel's."""
    return all(name in names for name in _OWN_NAMES)


def _module_table(ours: set[str]) -> dict[str, tuple[str, ...]]:
    """original_modules for the FluxTransformer2DModel with parameter names ``ours``."""
    def count(stem: str) -> int:
        return next(i for i in range(len(ours) + 1) if f"{stem}.{i}.norm1.linear.weight" not in ours
                    and f"{stem}.{i}.norm.linear.weight" not in ours)

    return original_modules(count("transformer_blocks"), count("single_transformer_blocks"),
                            "time_text_embed.guidance_embedder.linear_1.weight" in ours)


def original_state(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FluxTransformer2DModel's weights (by our names) in the original layout, as files hold them: the inverse of
    diffusers_state (fused weights joined, the final modulation's halves swapped back)."""
    out = {}
    for original, targets in _module_table(set(weights)).items():
        for suffix, own in _suffixes(original).items():
            held = [f"{t}.{own}" for t in targets]
            if not all(name in weights for name in held):
                continue
            tensor = torch.cat([weights[name] for name in held]) if len(held) > 1 else weights[held[0]]
            if targets[0] == _SWAPPED_HALVES:
                scale, shift = tensor.chunk(2)
                tensor = torch.cat((shift, scale))
            out[f"{original}.{suffix}"] = tensor
    return out


def parameter_origins(names) -> dict[str, str]:
    """{our parameter: the original-layout parameter it is (or is rows of)} for a FluxTransformer2DModel with
    parameter names ``names``, the swapped final modulation included."""
    ours = set(names)
    return {f"{target}.{own}": f"{original}.{suffix}" for original, targets in _module_table(ours).items()
            for suffix, own in _suffixes(original).items() for target in targets if f"{target}.{own}" in ours}


def original_names(names) -> dict[str, tuple[str, ...]]:
    """{original-layout parameter name: our parameters holding it, stacked by rows} for a FluxTransformer2DModel
    with parameter names ``names`` (a fused ``qkv`` / ``linear1`` is several of ours). The final modulation, whose
    halves are swapped, is left out: a change to it cannot be split by rows."""
    ours = set(names)
    out = {}
    for original, targets in _module_table(ours).items():
        if targets[0] == _SWAPPED_HALVES:
            continue
        for suffix, own in _suffixes(original).items():
            held = tuple(f"{t}.{own}" for t in targets)
            if all(name in ours for name in held):
                out[f"{original}.{suffix}"] = held
    return out
