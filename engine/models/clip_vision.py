"""CLIP_VISION: CLIP image encoders (ViT-L/H/bigG) loaded into transformers' CLIPVisionModelWithProjection, and
SigLIP vision towers (FLUX.1 Redux's sigclip_vision_patch14_384) into its SiglipVisionModel.

Files come in the transformers layout (``vision_model.*`` + ``visual_projection.weight``, the layout of ComfyUI's
clip_vision_g / clip_vision_h files; a whole CLIPModel's text tower is ignored) or OpenCLIP's (``visual.*``, also
inside unCLIP/SVD checkpoints). The config is read off the shapes; what shapes cannot tell is ComfyUI's: 16
attention heads for every CLIP vision model, quick-GELU for the OpenAI ViT-L depth and GELU for the deeper OpenCLIP
H / bigG. Images are prepared as ComfyUI's ``clip_preprocess`` does (bicubic antialiased resize, centre crop,
8-bit quantisation, CLIP mean/std) and the outputs are its ``clip_vision_output`` fields.

SigLIP files are in transformers' names under ``vision_model.`` and are told apart by their patch embedding, which
has a bias and no class token beside it. ComfyUI runs them without the attention-pooling head (ignored when the
file has one), with 16 heads as in both of its SigLIP configs, tanh-approximated GELU, its usual 1e-5 LayerNorm eps,
and mean / std 0.5; there is no projection, so its ``image_embeds`` are the normalised sequence itself.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Mapping

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, SiglipVisionConfig, SiglipVisionModel

from .detect import CheckpointError, Shapes, count_indices
from .load import CastingReader, assemble, open_checkpoint

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
SIGLIP_SIZE_STEP = 16  # SigLIP input sizes are multiples of it (224, 256, 384, 512)
VISION_HEADS = 16  # every CLIP / SigLIP vision config ComfyUI ships (L: 64-wide heads, H: 80, bigG: 104, SigLIP: 72)
GELU_FROM_LAYERS = 31  # ComfyUI's depth tests: 31+ layers are OpenCLIP H / bigG (GELU), fewer the OpenAI ViT-L
HF_ROOT = "vision_model."
HF_PROJECTION = "visual_projection.weight"
SIGLIP_PATCH_BIAS = HF_ROOT + "embeddings.patch_embedding.bias"
SIGLIP_HEAD = HF_ROOT + "head."  # the attention-pooling head, which ComfyUI does not run
OPEN_CLIP_PREFIXES = ("visual.", "embedder.model.visual.", "conditioner.embedders.0.open_clip.model.visual.")
# OpenCLIP residual-block parts -> transformers encoder-layer parts (q/k/v come fused in attn.in_proj_*)
_OPEN_CLIP_LAYER_PARTS = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1",
                          "mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}


@dataclass(frozen=True)
class ClipVisionSpec:
    layout: str  # "transformers", "open_clip" or "siglip" (transformers' SigLIP names)
    prefix: str  # where the vision tower's own keys start
    num_layers: int
    width: int
    intermediate_size: int
    patch_size: int
    image_size: int
    projection_dim: int | None  # None for SigLIP, which has no projection

    @property
    def siglip(self) -> bool:
        return self.layout == "siglip"

    @property
    def hidden_act(self) -> str:
        if self.siglip:
            return "gelu_pytorch_tanh"
        return "gelu" if self.num_layers >= GELU_FROM_LAYERS else "quick_gelu"

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (SIGLIP_MEAN, SIGLIP_STD) if self.siglip else (CLIP_MEAN, CLIP_STD)



def detect_clip_vision(shapes: Shapes) -> ClipVisionSpec | None:
    """The CLIP / SigLIP vision tower in ``{key: shape}``, or None when there is none (KeyError when one is
    incomplete)."""
    if SIGLIP_PATCH_BIAS in shapes and HF_ROOT + "embeddings.class_embedding" not in shapes:
        return _detect_siglip(shapes)
    if HF_ROOT + "embeddings.class_embedding" in shapes:
        root, layout = HF_ROOT, "transformers"
        names = {"class": "embeddings.class_embedding", "patch": "embeddings.patch_embedding.weight",
                 "positions": "embeddings.position_embedding.weight", "layer": "encoder.layers.{}.",
                 "fc1": "encoder.layers.0.mlp.fc1.weight"}
    else:
        root = next((p for p in OPEN_CLIP_PREFIXES if p + "class_embedding" in shapes), None)
        if root is None:
            return None
        layout = "open_clip"
        names = {"class": "class_embedding", "patch": "conv1.weight", "positions": "positional_embedding",
                 "layer": "transformer.resblocks.{}.", "fc1": "transformer.resblocks.0.mlp.c_fc.weight"}
    patch = shapes[root + names["patch"]]
    side = math.isqrt(shapes[root + names["positions"]][0] - 1)  # patch tokens form a square grid, plus the class
    if layout == "transformers":
        projection = shapes[HF_PROJECTION][0] if HF_PROJECTION in shapes else None
    else:
        projection = shapes[root + "proj"][1] if root + "proj" in shapes else None
    if projection is None:
        raise KeyError("visual projection")
    return ClipVisionSpec(layout=layout, prefix=root, num_layers=count_indices(shapes, root + names["layer"]),
                          width=shapes[root + names["class"]][0], intermediate_size=shapes[root + names["fc1"]][0],
                          patch_size=patch[-1], image_size=patch[-1] * side, projection_dim=projection)


def _detect_siglip(shapes: Shapes) -> ClipVisionSpec:
    patch = shapes[HF_ROOT + "embeddings.patch_embedding.weight"][-1]
    side = math.isqrt(shapes[HF_ROOT + "embeddings.position_embedding.weight"][0])  # patch tokens only
    # The input size need not be whole patches: so400m-patch14-384 reads 384 pixels as 27 patches of 14 (the last
    # 6 fall outside the grid), which is ComfyUI's image_size for its 729 positions.
    image_size = -(-patch * side // SIGLIP_SIZE_STEP) * SIGLIP_SIZE_STEP
    return ClipVisionSpec(layout="siglip", prefix=HF_ROOT, width=shapes[SIGLIP_PATCH_BIAS][0],
                          num_layers=count_indices(shapes, HF_ROOT + "encoder.layers.{}."),
                          intermediate_size=shapes[HF_ROOT + "encoder.layers.0.mlp.fc1.weight"][0],
                          patch_size=patch, image_size=image_size, projection_dim=None)


def vision_config(spec: ClipVisionSpec) -> CLIPVisionConfig | SiglipVisionConfig:
    if spec.siglip:
        return SiglipVisionConfig(
            hidden_size=spec.width, intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
            num_attention_heads=VISION_HEADS, num_channels=3, image_size=spec.image_size, patch_size=spec.patch_size,
            hidden_act=spec.hidden_act, layer_norm_eps=1e-5, vision_use_head=False)
    return CLIPVisionConfig(
        hidden_size=spec.width, intermediate_size=spec.intermediate_size, projection_dim=spec.projection_dim,
        num_hidden_layers=spec.num_layers, num_attention_heads=VISION_HEADS, num_channels=3,
        image_size=spec.image_size, patch_size=spec.patch_size, hidden_act=spec.hidden_act, layer_norm_eps=1e-5)


def vision_state_dict(spec: ClipVisionSpec, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under CLIPVisionModelWithProjection's / SiglipVisionModel's names (each file tensor read once)."""
    if spec.siglip:  # SiglipVisionModel holds the tower itself, without the ``vision_model.`` level
        return {k.removeprefix(HF_ROOT): tensors[k] for k in tensors
                if k.startswith(HF_ROOT) and not k.startswith(SIGLIP_HEAD) and not k.endswith("position_ids")}
    if spec.layout == "transformers":
        return {k: tensors[k] for k in tensors
                if (k.startswith(HF_ROOT) and not k.endswith("position_ids")) or k == HF_PROJECTION}
    p, v = spec.prefix, HF_ROOT
    out = {v + "embeddings.class_embedding": tensors[p + "class_embedding"],
           v + "embeddings.patch_embedding.weight": tensors[p + "conv1.weight"],
           v + "embeddings.position_embedding.weight": tensors[p + "positional_embedding"],
           HF_PROJECTION: tensors[p + "proj"].t().contiguous()}  # OpenCLIP multiplies x @ proj
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for kind in ("weight", "bias"):
            out[f"{v}{ours}.{kind}"] = tensors[f"{p}{theirs}.{kind}"]
    for i in range(spec.num_layers):
        block, layer = f"{p}transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        for kind in ("weight", "bias"):
            for theirs, ours in _OPEN_CLIP_LAYER_PARTS.items():
                out[f"{layer}{ours}.{kind}"] = tensors[f"{block}{theirs}.{kind}"]
            q, k, val = tensors[f"{block}attn.in_proj_{kind}"].chunk(3, dim=0)
            for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", val)):
                out[f"{layer}self_attn.{name}.{kind}"] = part
    return out


def clip_preprocess(image: torch.Tensor, size: int, *, crop: bool = True, mean=CLIP_MEAN,
                    std=CLIP_STD) -> torch.Tensor:
    """[B, H, W, C] images in 0..1 -> normalised [B, 3, size, size] pixels, as ComfyUI prepares CLIP input.

    With ``crop`` the short side is scaled to ``size`` and the centre cut out; without it the image is squashed.
    """
    pixels = image[..., :3].movedim(-1, 1)
    height, width = pixels.shape[-2:]
    if (height, width) != (size, size):
        if crop:
            scale = size / min(height, width)
            target = (round(scale * height), round(scale * width))
        else:
            target = (size, size)
        pixels = torch.nn.functional.interpolate(pixels, size=target, mode="bicubic", antialias=True)
        top, left = (pixels.shape[2] - size) // 2, (pixels.shape[3] - size) // 2
        pixels = pixels[:, :, top:top + size, left:left + size]
    pixels = torch.clip(255.0 * pixels, 0, 255).round() / 255.0  # the 8-bit image the model was trained on
    mean = torch.tensor(mean, device=pixels.device, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(std, device=pixels.device, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(device="cpu", dtype=torch.float32)  # ComfyUI's intermediate device


@dataclass
class ClipVisionOutput:
    """CLIP_VISION_OUTPUT values (ComfyUI's clip_vision_output fields), float32 on the CPU."""
    image_embeds: torch.Tensor  # CLIP: [B, projection_dim], post-LayerNorm class token, projected; SigLIP: as below
    last_hidden_state: torch.Tensor  # [B, tokens, width], the last layer's output (CLIP: before the post-LayerNorm,
    # SigLIP: after it)
    penultimate_hidden_states: torch.Tensor  # [B, tokens, width], the second-to-last layer's output

    def __getitem__(self, key: str) -> torch.Tensor:  # ComfyUI's output is read both ways by custom nodes
        return getattr(self, key)


@dataclass
class ClipVision:
    """CLIP_VISION values: the encoder network, what it was detected as, and the manager that places it."""
    image_encoder: CLIPVisionModelWithProjection | SiglipVisionModel
    spec: ClipVisionSpec
    manager: object = None
    name: str = ""

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    def encode(self, image: torch.Tensor, crop: bool = True) -> ClipVisionOutput:
        """Encode [B, H, W, C] images (CLIPVisionEncode; ``crop`` False for its "none")."""
        with self.manager.running(self) if self.manager else contextlib.nullcontext():
            weight = next(self.image_encoder.parameters())
            mean, std = self.spec.mean_std
            pixels = clip_preprocess(image.to(weight.device), self.image_size, crop=crop, mean=mean, std=std)
            out = self.image_encoder(pixel_values=pixels.to(weight.dtype), output_hidden_states=True)
        embeds = out.last_hidden_state if self.spec.siglip else out.image_embeds
        return ClipVisionOutput(image_embeds=_to_host(embeds),
                                last_hidden_state=_to_host(out.last_hidden_state),
                                penultimate_hidden_states=_to_host(out.hidden_states[-2]))


def load_clip_vision_file(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype, *,
                          manager=None, name: str | None = None, embedded: bool = False) -> ClipVision | None:
    """A CLIP or SigLIP vision file (CLIPVisionLoader); CheckpointError when it holds no (complete) vision tower.

    ``embedded``: the image encoder inside a whole checkpoint (unCLIP, SVD), None when the checkpoint has none.
    """
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        try:
            spec = detect_clip_vision(file.shapes)
        except (KeyError, IndexError) as exc:
            raise CheckpointError(f"{file.name}: incomplete CLIP vision model, missing {exc}") from None
        if spec is None:
            if embedded:
                return None
            raise CheckpointError(f"{file.name}: not a CLIP vision model (no class embedding under "
                                  f"'{HF_ROOT}' or {', '.join(repr(p) for p in OPEN_CLIP_PREFIXES)}, "
                                  f"nor a SigLIP patch embedding '{SIGLIP_PATCH_BIAS}')")
        tensors = CastingReader(file.shapes, file.read, device, dtype)
        network = SiglipVisionModel if spec.siglip else CLIPVisionModelWithProjection
        model = assemble(lambda: network(vision_config(spec)),
                          lambda _: vision_state_dict(spec, tensors), "CLIP vision", file.name)
    return ClipVision(model, spec, manager=manager, name=name or file.name)
