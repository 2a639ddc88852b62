"""Recognise a Stable Diffusion single-file checkpoint from its tensor names and shapes.

Works on ``{key: shape}`` only (no tensor data), so a 7 GB file is classified from its header. Every layer size
is read off the keys the way ComfyUI's model detection reads an LDM UNet (first conv -> model channels, resblock
widths -> channel multipliers, ``attn2.to_k`` -> context width, ...), and the family follows from the UNet's
structure, so tiny test checkpoints and real ones take the same path. What ComfyUI hard-codes per family (head
layout, latent scale) lives in ``FAMILIES``; where the text encoders sit in each family lives in
``TEXT_ENCODER_PREFIXES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

Shapes = Mapping[str, Sequence[int]]

# SDXL feeds the UNet's label embedding with pooled text + Fourier features (256 wide) of six size/crop numbers
# (five for the refiner: size, crop, aesthetic score).
ADM_FOURIER_WIDTH = 256
SDXL_SIZE_CONDITIONS = 6
REFINER_SIZE_CONDITIONS = 5

# ComfyUI's SD2 test: trained v-prediction SD2 UNets have a visibly spread bias in the first LayerNorm of the
# last output transformer; eps models keep it near zero. Population std above this means v-prediction.
V_PRED_BIAS_STD = 0.09

CLIP_HEAD_WIDTH = 64  # every SD text encoder (CLIP-L, OpenCLIP-H, bigG) uses 64-wide attention heads

# SD2 unCLIP feeds the label embedding an image embedding and its noise level's timestep embedding, equally wide.
# Whole checkpoints carry the embedding noise augmentor's schedule and the image encoder; a bare UNet is known by
# the released sizes (context 1024; CLIP-L images: 2 x 768, OpenCLIP-H: 2 x 1024).
UNCLIP_MARKERS = ("noise_augmentor.", "embedder.model.visual.")
UNCLIP_SIZES = {(1024, 1536), (1024, 2048)}  # (context_dim, adm_in_channels)
# Stable Video Diffusion: every UNet res block has a temporal twin ("time_stack") and a mixing factor.
VIDEO_UNET_MARKERS = (".time_stack.", ".time_mixer.")


class CheckpointError(Exception):
    """A file that cannot be read as, or is not, a supported Stable Diffusion checkpoint (or part of one)."""


def unrecognised(name: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{name}: not a recognised Stable Diffusion checkpoint ({reason})")


def detect_or_refuse(file, detect: Callable[[Shapes], object], what: str, marker: str):
    """``detect(file.shapes)`` for a stand-alone file of one kind (``what``), or a CheckpointError saying it is
    incomplete (a key ``detect`` needed is missing) or not one at all (no ``marker`` keys)."""
    try:
        spec = detect(file.shapes)
    except (KeyError, IndexError, ValueError) as exc:
        raise unrecognised(file.name, f"incomplete {what}, missing {exc}") from None
    if spec is None:
        raise CheckpointError(f"{file.name}: not a {what} (no {marker} keys)")
    return spec


@dataclass(frozen=True)
class Family:
    num_heads: int  # fixed head count, or -1 when heads come from num_head_channels
    num_head_channels: int  # fixed head width, or -1
    latent_scale_factor: float


FAMILIES = {
    "sd1": Family(num_heads=8, num_head_channels=-1, latent_scale_factor=0.18215),
    "sd2": Family(num_heads=-1, num_head_channels=64, latent_scale_factor=0.18215),
    "sdxl": Family(num_heads=-1, num_head_channels=64, latent_scale_factor=0.13025),
    "sdxl_refiner": Family(num_heads=-1, num_head_channels=64, latent_scale_factor=0.13025),
}

# family -> its text encoders as (name, key prefix of that encoder in an LDM/SGM checkpoint); the names are
# ComfyUI's (clip_l / clip_h / clip_g).
TEXT_ENCODER_PREFIXES = {
    "sd1": (("l", "cond_stage_model.transformer."),),
    "sd2": (("h", "cond_stage_model.model."),),
    "sdxl": (("l", "conditioner.embedders.0.transformer."), ("g", "conditioner.embedders.1.model.")),
    "sdxl_refiner": (("g", "conditioner.embedders.0.model."),),
}
# SD2 saved by the SGM code base keeps its one encoder where the refiner keeps bigG.
SD2_SGM_TEXT_PREFIX = "conditioner.embedders.0.model."
_ALL_TEXT_PREFIXES = tuple(sorted({p for encoders in TEXT_ENCODER_PREFIXES.values() for _, p in encoders}))

UNET_PREFIXES = ("model.diffusion_model.", "")
VAE_PREFIXES = ("first_stage_model.", "vae.", "")
# Where a stand-alone text encoder file (CLIPLoader) may keep its weights: bare or under a checkpoint prefix.
TEXT_FILE_PREFIXES = ("",) + _ALL_TEXT_PREFIXES


@dataclass(frozen=True)
class UNetSpec:
    """An LDM ``openaimodel`` UNet, in ComfyUI's unet_config terms."""
    prefix: str
    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: tuple[int, ...]  # per level
    transformer_depth: tuple[int, ...]  # per input res block, level 0 first
    transformer_depth_output: tuple[int, ...]  # per output block, full-resolution end first (as ComfyUI)
    transformer_depth_middle: int  # -1: two res blocks only, -2: no middle block
    context_dim: int
    use_linear_in_transformer: bool
    adm_in_channels: int | None
    num_heads: int
    num_head_channels: int
    unclip: bool = False  # the label embedding takes an unCLIP image embedding + noise level (SD2 unCLIP)

    @property
    def attention_resolutions(self) -> tuple[int, ...]:
        """Downsampling factors (1, 2, 4, ...) of the levels whose input blocks hold transformers."""
        return tuple(2 ** level for level, depths in enumerate(self.input_depths_by_level()) if any(depths))

    def input_depths_by_level(self) -> tuple[tuple[int, ...], ...]:
        return _split(self.transformer_depth, self.num_res_blocks)

    def output_depths_by_level(self) -> tuple[tuple[int, ...], ...]:
        return _split(self.transformer_depth_output, [n + 1 for n in self.num_res_blocks])

    def heads(self, level: int) -> int:
        if self.num_heads > 0:
            return self.num_heads
        return self.model_channels * self.channel_mult[level] // self.num_head_channels


@dataclass(frozen=True)
class TextEncoderSpec:
    name: str  # "l", "h" or "g" (ComfyUI's clip_l / clip_h / clip_g)
    layout: str  # "transformers" (CLIPTextModel keys) or "open_clip"
    prefix: str  # where the text model's own keys start (``embeddings.``/``encoder.`` or ``token_embedding``)
    projection_key: str | None  # the pooled-output projection, when the file has one
    num_layers: int
    width: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    projection_dim: int | None
    hidden_act: str


@dataclass(frozen=True)
class VaeSpec:
    prefix: str
    in_channels: int
    out_channels: int
    base_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    latent_channels: int
    use_quant_conv: bool

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


@dataclass(frozen=True)
class ModelSpec:
    family: str  # a key of FAMILIES
    unet: UNetSpec
    prediction: str  # "eps" or "v_prediction"
    zsnr: bool
    text_encoders: tuple[TextEncoderSpec, ...]  # () when the file holds none
    vae: VaeSpec | None

    @property
    def inpaint(self) -> bool:
        return self.unet.in_channels == 9

    @property
    def latent_scale_factor(self) -> float:
        return FAMILIES[self.family].latent_scale_factor


def _split(values: Sequence[int], counts: Iterable[int]) -> tuple[tuple[int, ...], ...]:
    out, start = [], 0
    for n in counts:
        out.append(tuple(values[start:start + n]))
        start += n
    return tuple(out)


def count_indices(keys: Iterable[str], fmt: str) -> int:
    """How many consecutive indices i have some key starting with ``fmt.format(i)``."""
    if "{}" not in fmt:
        raise ValueError(f"count_indices needs a '{{}}' placeholder in {fmt!r}")
    keys = tuple(keys)
    n = 0
    while any(k.startswith(fmt.format(n)) for k in keys):
        n += 1
    return n


def _transformer(shapes: Shapes, keys: Sequence[str], prefix: str) -> tuple[int, int, bool] | None:
    """(depth, context_dim, linear proj_in) of the spatial transformer at ``prefix``, if there is one."""
    blocks = prefix + "transformer_blocks."
    depth = count_indices((k for k in keys if k.startswith(blocks)), blocks + "{}.")
    if depth == 0:
        return None
    context_dim = shapes[blocks + "0.attn2.to_k.weight"][1]
    return depth, context_dim, len(shapes[prefix + "proj_in.weight"]) == 2


def find_unet_prefix(shapes: Shapes) -> str | None:
    return next((p for p in UNET_PREFIXES if p + "input_blocks.0.0.weight" in shapes), None)


def detect_unet(shapes: Shapes, prefix: str, name: str) -> tuple[str, UNetSpec]:
    """(family, UNetSpec) of the UNet whose keys start with ``prefix``."""
    keys = [k for k in shapes if k.startswith(prefix)]
    if any(marker in k for k in keys for marker in VIDEO_UNET_MARKERS):
        raise CheckpointError(f"{name}: a Stable Video Diffusion (video) model; comfyd runs image models only, "
                              f"not video models")
    conv_in = shapes[prefix + "input_blocks.0.0.weight"]
    model_channels, in_channels = conv_in[0], conv_in[1]
    out_channels = shapes[prefix + "out.2.weight"][0] if prefix + "out.2.weight" in shapes else 4
    adm = shapes[prefix + "label_emb.0.0.weight"][1] if prefix + "label_emb.0.0.weight" in shapes else None

    channel_mult, num_res_blocks, depth_in = [], [], []
    level_blocks, level_mult = 0, 0
    context_dim, linear = None, False
    for i in range(count_indices(keys, prefix + "input_blocks.{}.")):
        block = f"{prefix}input_blocks.{i}."
        if block + "0.op.weight" in shapes:  # a downsampler closes the level
            num_res_blocks.append(level_blocks)
            channel_mult.append(level_mult)
            level_blocks, level_mult = 0, 0
        elif block + "0.in_layers.0.weight" in shapes:
            level_blocks += 1
            level_mult = shapes[block + "0.out_layers.3.weight"][0] // model_channels
            found = _transformer(shapes, keys, block + "1.")
            depth_in.append(found[0] if found else 0)
            if found and context_dim is None:
                context_dim, linear = found[1], found[2]
    num_res_blocks.append(level_blocks)
    channel_mult.append(level_mult)

    depth_out = []
    for i in reversed(range(count_indices(keys, prefix + "output_blocks.{}."))):
        block = f"{prefix}output_blocks.{i}."
        if block + "0.in_layers.0.weight" in shapes:
            found = _transformer(shapes, keys, block + "1.")
            depth_out.append(found[0] if found else 0)

    if prefix + "middle_block.1.proj_in.weight" in shapes:
        depth_mid = count_indices(keys, prefix + "middle_block.1.transformer_blocks.{}.")
    elif prefix + "middle_block.0.in_layers.0.weight" in shapes:
        depth_mid = -1
    else:
        depth_mid = -2

    if context_dim is None:
        raise unrecognised(name, "UNet without cross-attention")
    unclip = is_unclip(shapes, adm, context_dim, linear)
    family = "sd2" if unclip else unet_family(adm, context_dim, linear)
    if family is None:
        raise unrecognised(name, f"UNet with adm_in_channels={adm} and context_dim={context_dim}")
    traits = FAMILIES[family]
    return family, UNetSpec(
        prefix=prefix, in_channels=in_channels, out_channels=out_channels, model_channels=model_channels,
        channel_mult=tuple(channel_mult), num_res_blocks=tuple(num_res_blocks), transformer_depth=tuple(depth_in),
        transformer_depth_output=tuple(depth_out), transformer_depth_middle=depth_mid, context_dim=context_dim,
        use_linear_in_transformer=linear, adm_in_channels=adm, num_heads=traits.num_heads,
        num_head_channels=traits.num_head_channels, unclip=unclip)


def is_unclip(shapes: Shapes, adm: int | None, context_dim: int, linear: bool) -> bool:
    """An SD2 unCLIP UNet: SD2's linear transformers with a label embedding twice an image embedding wide, in a
    file that holds the unCLIP parts (or, for a bare UNet, of the released sizes)."""
    if adm is None or not linear or adm % 2:
        return False
    return (context_dim, adm) in UNCLIP_SIZES or any(k.startswith(UNCLIP_MARKERS) for k in shapes)


def unet_family(adm: int | None, context_dim: int, linear: bool) -> str | None:
    if adm is None:
        return "sd2" if linear else "sd1"
    # The refiner's context is bigG alone, which is also its pooled width; SDXL base's context is CLIP-L + bigG.
    if adm - REFINER_SIZE_CONDITIONS * ADM_FOURIER_WIDTH == context_dim:
        return "sdxl_refiner"
    if linear and adm > SDXL_SIZE_CONDITIONS * ADM_FOURIER_WIDTH:
        return "sdxl"
    return None


def detect_text_encoder(shapes: Shapes, prefix: str, name: str | None = None) -> TextEncoderSpec | None:
    """The CLIP text encoder under ``prefix`` (transformers or OpenCLIP key layout), if there is one.

    ``name`` defaults to ComfyUI's guess from the depth (32 layers: bigG, 24: H, else L).
    """
    for root, layout in ((prefix + "text_model.", "transformers"), (prefix, "transformers"), (prefix, "open_clip")):
        if layout == "transformers" and root + "embeddings.token_embedding.weight" in shapes:
            break
        if layout == "open_clip" and root + "token_embedding.weight" in shapes:
            break
    else:
        return None
    keys = [k for k in shapes if k.startswith(root)]
    if layout == "transformers":
        token = shapes[root + "embeddings.token_embedding.weight"]
        positions = shapes[root + "embeddings.position_embedding.weight"][0]
        num_layers = count_indices(keys, root + "encoder.layers.{}.")
        intermediate = shapes[root + "encoder.layers.0.mlp.fc1.weight"][0]
        projection_key = prefix + "text_projection.weight"
        projection_dim = shapes[projection_key][0] if projection_key in shapes else None
    else:
        token = shapes[root + "token_embedding.weight"]
        positions = shapes[root + "positional_embedding"][0]
        num_layers = count_indices(keys, root + "transformer.resblocks.{}.")
        intermediate = shapes[root + "transformer.resblocks.0.mlp.c_fc.weight"][0]
        projection_key = root + "text_projection"
        projection_dim = shapes[projection_key][1] if projection_key in shapes else None
    if name is None:
        name = "g" if num_layers >= 31 else "h" if num_layers >= 23 else "l"
    width = token[1]
    return TextEncoderSpec(
        name=name, layout=layout, prefix=root, projection_key=projection_key if projection_dim else None,
        num_layers=num_layers, width=width, num_heads=max(1, width // CLIP_HEAD_WIDTH),
        intermediate_size=intermediate, vocab_size=token[0], max_positions=positions,
        projection_dim=projection_dim,
        hidden_act="quick_gelu" if name == "l" else "gelu")  # OpenAI CLIP-L vs the OpenCLIP models


def detect_vae(shapes: Shapes, prefixes: Sequence[str] = VAE_PREFIXES) -> VaeSpec | None:
    """The LDM ``AutoencoderKL`` under the first of ``prefixes`` that holds one."""
    prefix = next((p for p in prefixes if p + "decoder.conv_in.weight" in shapes), None)
    if prefix is None or prefix + "encoder.conv_in.weight" not in shapes:
        return None
    keys = [k for k in shapes if k.startswith(prefix + "encoder.down.")]
    conv_in = shapes[prefix + "encoder.conv_in.weight"]
    base = conv_in[0]
    levels = count_indices(keys, prefix + "encoder.down.{}.")
    return VaeSpec(
        prefix=prefix, in_channels=conv_in[1], out_channels=shapes[prefix + "decoder.conv_out.weight"][0],
        base_channels=base,
        channel_mult=tuple(shapes[f"{prefix}encoder.down.{i}.block.0.conv1.weight"][0] // base for i in range(levels)),
        num_res_blocks=count_indices(keys, prefix + "encoder.down.0.block.{}."),
        latent_channels=shapes[prefix + "decoder.conv_in.weight"][1],
        use_quant_conv=prefix + "quant_conv.weight" in shapes)


def _text_encoders(shapes: Shapes, family: str) -> tuple[TextEncoderSpec, ...]:
    table = TEXT_ENCODER_PREFIXES[family]
    if family == "sd2" and not any(k.startswith(table[0][1]) for k in shapes):
        table = (("h", SD2_SGM_TEXT_PREFIX),)
    found = tuple(detect_text_encoder(shapes, prefix, name) for name, prefix in table)
    return tuple(te for te in found if te is not None)


def _prediction(shapes: Shapes, family: str, unet: UNetSpec, read: Callable[[str], Any] | None) -> str:
    if "v_pred" in shapes:
        return "v_prediction"
    if family != "sd2" or unet.in_channels != 4 or read is None:  # SD2 inpainting models are eps
        return "eps"
    last = len(unet.transformer_depth_output) - 1
    key = f"{unet.prefix}output_blocks.{last}.1.transformer_blocks.0.norm1.bias"
    if key in shapes and float(read(key).float().std(unbiased=False)) > V_PRED_BIAS_STD:
        return "v_prediction"
    return "eps"


def detect(shapes: Shapes, *, name: str = "checkpoint", read: Callable[[str], Any] | None = None) -> ModelSpec:
    """Classify a checkpoint (or a UNet-only file) from ``{key: shape}``.

    ``read(key)`` returns one tensor; it is used only for SD2's v-prediction test (one small bias). Without it an
    SD2 model counts as eps unless the file carries a ``v_pred`` marker key. Raises CheckpointError naming
    ``name`` when the keys are not an SD1/SD2/SDXL UNet.
    """
    prefix = find_unet_prefix(shapes)
    if prefix is None:
        raise unrecognised(name, "no UNet 'input_blocks.0.0.weight' key")
    try:
        family, unet = detect_unet(shapes, prefix, name)
        text_encoders = _text_encoders(shapes, family)
        vae = detect_vae(shapes, VAE_PREFIXES[:2])
    except (KeyError, IndexError) as exc:  # a layer present without the tensors that must come with it
        raise unrecognised(name, f"incomplete layer, missing {exc}") from None
    if not text_encoders and any(k.startswith(p) for k in shapes for p in _ALL_TEXT_PREFIXES):
        raise unrecognised(name, f"its text encoder is not where a {family} checkpoint keeps it")
    width = sum(te.width for te in text_encoders)
    if text_encoders and width != unet.context_dim:
        raise unrecognised(name, f"{family} UNet expects {unet.context_dim}-wide text features, "
                                 f"its text encoders give {width}")
    return ModelSpec(family=family, unet=unet, prediction=_prediction(shapes, family, unet, read),
                     zsnr="ztsnr" in shapes, text_encoders=text_encoders, vae=vae)
