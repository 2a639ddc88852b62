"""What ComfyUI's save nodes write: MODEL, CLIP and VAE weights, with their patches (LoRAs, merges) applied, in the
layouts the released single files use, so that the checkpoint loaders read them back.

Checkpoints (CheckpointSave, ModelSave) hold the UNet under ``model.diffusion_model.`` in the LDM layout, the text
encoders where their family keeps them (``detect.TEXT_ENCODER_PREFIXES``: CLIP-L in transformers' names, OpenCLIP
ones in OpenCLIP's) and the VAE under ``first_stage_model.`` in the LDM layout; the keys ComfyUI adds say how the
model samples (``v_pred``, ``ztsnr``, ``edm_vpred.sigma_*``), and so does the metadata (``modelspec.*``). Text
encoder files (CLIPSave) hold one encoder each in the names ComfyUI gives it (transformers'), VAE files (VAESave)
the LDM layout without a prefix. Each weight is written in the dtype its network holds it in, as ComfyUI does.

Of the DiTs only FLUX is saved, and only as a diffusion model (ModelSave: the original layout ComfyUI and
UNETLoader read, under ``model.diffusion_model.``); SD3 and Z-Image are refused, and so are FLUX checkpoints with
their text encoders and VAE.
"""
from __future__ import annotations

from typing import Mapping

import torch
from diffusers import AutoencoderKL

from ..sampling.model_sampling import ContinuousModelSampling
from . import convert, flux
from .detect import FAMILIES, TEXT_ENCODER_PREFIXES
from .manager import networks, patched_weights

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
# SDXL's CLIP-L carries its position ids in the released layout; ComfyUI writes them back (0..76, int64).
POSITION_IDS = "text_model.embeddings.position_ids"
# CLIPSave's file per encoder: ComfyUI's name for it, which the file name ends with.
ENCODER_FILE_NAMES = {"l": "clip_l", "g": "clip_g", "h": "clip_h", "t5xxl": "t5xxl"}
# modelspec.architecture of the families ComfyUI names in a checkpoint's metadata.
ARCHITECTURES = {"sdxl": "stable-diffusion-xl-v1-base", "sdxl_refiner": "stable-diffusion-xl-v1-refiner"}
SDXL_EDIT_ARCHITECTURE = "stable-diffusion-xl-v1-edit"  # SDXL instruct-pix2pix (8 input channels)
PREDICT_KEYS = {"eps": "epsilon", "v_prediction": "v"}


def _stored(owner) -> dict[str, dict[str, torch.Tensor]]:
    """{patch target: {parameter: its value with the owner's patches, in the network's dtype, on the CPU}}."""
    dtypes = {target: {name: p.dtype for name, p in network.named_parameters()} for target, network in networks(owner)}
    return {target: {name: weight.to("cpu", dtypes[target][name]) for name, weight in weights.items()}
            for target, weights in patched_weights(owner).items()}


def _refuse(model, what: str = "") -> None:
    raise ValueError(f"saving {getattr(model, 'family', type(model).__name__)} models{what} is not supported: "
                     f"only SD 1.x / 2.x / SDXL checkpoints and FLUX diffusion models are written")


def unet_state_dict(model) -> dict[str, torch.Tensor]:
    """The MODEL's diffusion model in its original layout (the LDM UNet's, FLUX's), under ``model.diffusion_model.``."""
    family = getattr(model, "family", None)
    if family not in FAMILIES and family != "flux":
        _refuse(model)
    weights = _stored(model)["unet"]
    if family == "flux":
        return {UNET_PREFIX + k: v for k, v in flux.original_state(weights).items()}
    return {UNET_PREFIX + ldm: weights[ours] for ldm, ours in convert.ldm_unet_names(weights).items()}


def sampling_keys(model) -> dict[str, torch.Tensor]:
    """The keys ComfyUI adds to a saved checkpoint to say how it samples."""
    keys = {}
    sampling = model.get_model_object("model_sampling")
    if isinstance(sampling, ContinuousModelSampling) and sampling.prediction in ("v_prediction", "edm"):
        keys["edm_vpred.sigma_max"] = torch.tensor(float(sampling.sigma_max))
        keys["edm_vpred.sigma_min"] = torch.tensor(float(sampling.sigma_min))
    if model.family in FAMILIES and model.prediction == "v_prediction":
        keys["v_pred"] = torch.tensor([])
        if getattr(sampling, "zsnr", False):
            keys["ztsnr"] = torch.tensor([])
    return keys


def checkpoint_metadata(model, title: str) -> dict[str, str]:
    """The modelspec entries ComfyUI writes for `model` (`title`: "<file name> <counter>")."""
    metadata = {}
    architecture = ARCHITECTURES.get(model.family)
    if model.family == "sdxl" and model.in_channels == 8:
        architecture = SDXL_EDIT_ARCHITECTURE
    if architecture is not None:
        metadata.update({"modelspec.architecture": architecture, "modelspec.sai_model_spec": "1.0.0",
                         "modelspec.implementation": "sgm", "modelspec.title": title})
    if model.family in FAMILIES and model.prediction in PREDICT_KEYS:  # (ComfyUI's FLUX type has none)
        metadata["modelspec.predict_key"] = PREDICT_KEYS[model.prediction]
    return metadata


def _text_weights(clip) -> dict[str, dict[str, torch.Tensor]]:
    """{encoder ("l", "g", ...): {transformers' full parameter name: value}} of a CLIP, patches applied."""
    stored = _stored(clip)
    return {name: {convert.text_model_name(k): v for k, v in stored[f"clip_{name}"].items()}
            if name != "t5xxl" else stored[f"clip_{name}"] for name in clip.models}


def _open_clip(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for original, parts in convert.open_clip_names(weights).items():
        value = torch.cat([weights[p] for p in parts]) if len(parts) > 1 else weights[parts[0]]
        out[original] = value.t().contiguous() if original == convert.OPEN_CLIP_TRANSPOSED else value
    return out


def clip_checkpoint_state_dict(clip, family: str) -> dict[str, torch.Tensor]:
    """A CLIP's text encoders where a `family` checkpoint keeps them (the MODEL's family decides, as ComfyUI's)."""
    table = dict(TEXT_ENCODER_PREFIXES.get(family, ()))
    if set(table) != set(clip.models):
        raise ValueError(f"a {family} checkpoint holds the text encoders {sorted(table)}; this CLIP has "
                         f"{sorted(clip.models)}")
    out = {}
    for name, weights in _text_weights(clip).items():
        prefix = table[name]
        if prefix.endswith(".model."):  # OpenCLIP's layout
            out.update((prefix + k, v) for k, v in _open_clip(weights).items())
            continue
        # CLIP-L's projection is not part of an SD checkpoint (ComfyUI leaves it out too)
        out.update((prefix + k, v) for k, v in weights.items() if not k.startswith("text_projection."))
        if family == "sdxl":
            positions = clip.models[name].config.max_position_embeddings
            out[prefix + POSITION_IDS] = torch.arange(positions).expand(1, -1).contiguous()
    return out


def clip_files(clip) -> dict[str, dict[str, torch.Tensor]]:
    """CLIPSave's files: {ComfyUI's name of an encoder ("clip_l", ...): its weights in the names ComfyUI gives
    them}, in ComfyUI's order of encoders."""
    weights = _text_weights(clip)
    unknown = set(weights) - set(ENCODER_FILE_NAMES)
    if unknown:
        raise ValueError(f"saving the text encoder(s) {sorted(unknown)} is not supported")
    return {file: weights[name] for name, file in ENCODER_FILE_NAMES.items() if name in weights}


def vae_state_dict(vae) -> dict[str, torch.Tensor]:
    """The VAE in the LDM layout, without a prefix."""
    network = vae.autoencoder
    if not isinstance(network, AutoencoderKL):
        raise ValueError(f"saving the {getattr(vae, 'name', '') or type(vae).__name__} VAE is not supported: only "
                         f"full (KL) VAEs are")
    weights = _stored(vae)["vae"]
    return {ldm: convert.ldm_vae_shape(ldm, weights[ours])
            for ldm, ours in convert.ldm_vae_names(weights, network.config).items()}


def checkpoint_state_dict(model, clip=None, vae=None) -> dict[str, torch.Tensor]:
    """A whole single-file checkpoint of `model` with `clip` and `vae` when given (ComfyUI's save_checkpoint)."""
    if model.family not in FAMILIES and (clip is not None or vae is not None):
        _refuse(model, " with their text encoders and VAE")
    out = unet_state_dict(model)
    if clip is not None:
        out.update(clip_checkpoint_state_dict(clip, model.family))
    if vae is not None:
        out.update((VAE_PREFIX + k, v) for k, v in vae_state_dict(vae).items())
    out.update(sampling_keys(model))
    return {k: v.contiguous() for k, v in out.items()}
