"""Load single-file checkpoints (and UNet / VAE / text-encoder-only files) into diffusers/transformers models.

Nothing is fetched: configs come from ``detect`` + ``convert``. Safetensors files are memory-mapped and each tensor
is read once, straight onto the target device and cast to the target dtype; models are built on the ``meta``
device and take those tensors as their parameters (``load_state_dict(assign=True)``), so no second copy of the
weights is ever made. Parameter names must match exactly; mismatches are reported as CheckpointError.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors import safe_open
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from . import convert
from .cast import FP8_DTYPES
from .detect import (
    TEXT_FILE_PREFIXES,
    CheckpointError,
    ModelSpec,
    TextEncoderSpec,
    UNetSpec,
    VaeSpec,
    detect,
    detect_text_encoder,
    detect_vae,
    unrecognised,
)

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
_LISTED = 8  # mismatched names shown in an error


@dataclass
class LoadedTextEncoder:
    spec: TextEncoderSpec
    model: CLIPTextModel | CLIPTextModelWithProjection

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class LoadedCheckpoint:
    spec: ModelSpec
    unet: UNet2DConditionModel | None
    clip: tuple[LoadedTextEncoder, ...]  # SDXL base: (l, g); others one encoder; () when not loaded / absent
    vae: AutoencoderKL | None

    @property
    def model_sampling(self) -> str:
        """"eps" or "v_prediction"."""
        return self.spec.prediction

    @property
    def latent_scale_factor(self) -> float:
        return self.spec.latent_scale_factor


class CastingReader(Mapping):
    """A checkpoint's tensors by name, each read when first asked for, on ``device``, floats cast to ``dtype``.

    ComfyUI's "scaled fp8" files store a weight divided by a per-tensor scale kept beside it as
    ``<layer>.scale_weight``; such a weight is read multiplied back.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], read: Callable[[str], torch.Tensor],
                 device: torch.device, dtype: torch.dtype, *, keep_fp8: bool = False):
        self._shapes, self._read, self._device, self._dtype = shapes, read, device, dtype
        self._keep_fp8 = keep_fp8  # matrices stored in fp8 stay fp8 (cast.narrow_storage computes with them)

    def __getitem__(self, key: str) -> torch.Tensor:
        tensor = self._read(key)
        scale = key.removesuffix("weight") + "scale_weight"
        scaled = key.endswith(".weight") and scale in self._shapes
        if self._keep_fp8 and tensor.dtype in FP8_DTYPES and tensor.dim() == 2 and not scaled:
            return tensor.to(self._device)
        tensor = self._cast(tensor)
        if scaled:
            tensor = tensor * self._cast(self._read(scale))
        return tensor

    def _cast(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device=self._device, dtype=self._dtype if tensor.is_floating_point() else None)

    def __contains__(self, key: object) -> bool:
        return key in self._shapes

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


@dataclass
class _OpenFile:
    name: str
    shapes: dict[str, tuple[int, ...]]
    read: Callable[[str], torch.Tensor]


def _torch_load(path: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "_use_new_zipfile_serialization" not in str(exc):  # mmap needs the zip format (torch >= 1.6)
            raise
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"holds a {type(obj).__name__}, not a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _safetensors_device(device: torch.device) -> str:
    """CUDA tensors are read straight into device memory; other devices go through (mapped) host memory."""
    if device.type != "cuda":
        return "cpu"
    return f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"


@contextlib.contextmanager
def open_checkpoint(path: str | os.PathLike, device: torch.device) -> Iterator[_OpenFile]:
    """Open a checkpoint for reading: names, shapes and a tensor reader. CheckpointError if unreadable."""
    path = os.fspath(path)
    name = os.path.basename(path)
    with contextlib.ExitStack() as stack:
        try:
            if path.lower().endswith(SAFETENSORS_SUFFIXES):
                handle = stack.enter_context(safe_open(path, framework="pt", device=_safetensors_device(device)))
                shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
                read = handle.get_tensor
            else:
                tensors = _torch_load(path)
                shapes = {k: tuple(v.shape) for k, v in tensors.items()}
                read = tensors.__getitem__
        except Exception as exc:  # noqa: BLE001 - any failure to parse a file means a corrupt file
            raise unrecognised(name, f"unreadable: {type(exc).__name__}: {exc}") from exc
        yield _OpenFile(name, shapes, read)


def _check_names(model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, name: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if tuple(state[k].shape) != expected[k])
    problems = [f"{label} {keys[:_LISTED]}{' ...' if len(keys) > _LISTED else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise CheckpointError(f"{name}: {what} weights do not match the detected layout: " + "; ".join(problems))


def _rebuild_meta_buffers(model: torch.nn.Module) -> None:
    """Buffers not stored in files stay on ``meta`` after assignment; recreate the one CLIP has (position ids)."""
    device = next(model.parameters()).device
    if device.type == "meta":
        return
    for module in model.modules():
        for key, buffer in module.named_buffers(recurse=False):
            if not buffer.is_meta:
                continue
            if key != "position_ids":
                raise RuntimeError(f"{type(module).__name__}.{key} has no value in the file")
            module.register_buffer(key, torch.arange(buffer.shape[-1], device=device).expand(buffer.shape),
                                   persistent=False)


def assemble(factory: Callable[[], torch.nn.Module], state_of: Callable[[torch.nn.Module], dict], what: str,
              name: str):
    """Build on ``meta``, convert the tensors for that model, check the names, adopt the tensors as parameters."""
    with torch.device("meta"):
        model = factory()
    state = state_of(model)
    _check_names(model, state, what, name)
    model.load_state_dict(state, strict=True, assign=True)
    _rebuild_meta_buffers(model)
    return model.requires_grad_(False).eval()


def build_unet(spec: UNetSpec, tensors: Mapping[str, torch.Tensor], *,
               name: str = "checkpoint") -> UNet2DConditionModel:
    """A UNet2DConditionModel whose parameters are the tensors of ``tensors`` (keyed as in the file)."""
    try:
        config = convert.unet_config(spec)
    except ValueError as exc:
        raise unrecognised(name, f"unsupported layout: {exc}") from None
    return assemble(lambda: UNet2DConditionModel(**config),
                     lambda _: convert.unet_state_dict(spec, tensors, config), "UNet", name)


def build_vae(spec: VaeSpec, tensors: Mapping[str, torch.Tensor], *, name: str = "checkpoint") -> AutoencoderKL:
    config = convert.vae_config(spec)
    return assemble(lambda: AutoencoderKL(**config), lambda _: convert.vae_state_dict(spec, tensors, config),
                     "VAE", name)


def build_text_encoder(spec: TextEncoderSpec, tensors: Mapping[str, torch.Tensor], *,
                       name: str = "checkpoint") -> LoadedTextEncoder:
    cls = CLIPTextModelWithProjection if spec.projection_dim else CLIPTextModel
    config = convert.text_config(spec)
    model = assemble(lambda: cls(config), lambda m: convert.text_state_dict(spec, tensors, m),
                      f"text encoder {spec.name}", name)
    return LoadedTextEncoder(spec, model)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype, *,
                    load_unet: bool = True, load_clip: bool = True, load_vae: bool = True) -> LoadedCheckpoint:
    """Detect and load an SD1/SD2/SDXL single-file checkpoint (``.safetensors``, or ``.ckpt`` via torch.load)."""
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        spec = detect(file.shapes, name=file.name, read=file.read)
        tensors = CastingReader(file.shapes, file.read, device, dtype)
        unet = build_unet(spec.unet, tensors, name=file.name) if load_unet else None
        clip = tuple(build_text_encoder(te, tensors, name=file.name) for te in spec.text_encoders) if load_clip else ()
        vae = build_vae(spec.vae, tensors, name=file.name) if load_vae and spec.vae else None
    return LoadedCheckpoint(spec, unet, clip, vae)


def load_unet_file(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype) -> LoadedCheckpoint:
    """A diffusion-model file (UNETLoader): bare UNet keys or ``model.diffusion_model.``-prefixed ones."""
    return load_checkpoint(path, device, dtype, load_clip=False, load_vae=False)


def load_vae_file(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype) -> AutoencoderKL:
    """A VAE file (VAELoader): LDM AutoencoderKL keys, bare or under ``first_stage_model.`` / ``vae.``."""
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        try:
            spec = detect_vae(file.shapes)
        except (KeyError, IndexError) as exc:
            raise unrecognised(file.name, f"incomplete VAE, missing {exc}") from None
        if spec is None:
            raise unrecognised(file.name, "no VAE 'decoder.conv_in.weight' key")
        return build_vae(spec, CastingReader(file.shapes, file.read, device, dtype), name=file.name)


def load_clip_file(path: str | os.PathLike, device: torch.device | str, dtype: torch.dtype, *,
                   name: str | None = None) -> LoadedTextEncoder:
    """A text encoder file (CLIPLoader), transformers or OpenCLIP keys, bare or under a checkpoint prefix.

    ``name`` ("l", "h", "g") overrides the guess from the depth.
    """
    device = torch.device(device)
    with open_checkpoint(path, device) as file:
        try:
            spec = next((s for p in TEXT_FILE_PREFIXES if (s := detect_text_encoder(file.shapes, p, name))), None)
        except (KeyError, IndexError) as exc:
            raise unrecognised(file.name, f"incomplete text encoder, missing {exc}") from None
        if spec is None:
            raise unrecognised(file.name, "no CLIP text encoder keys")
        return build_text_encoder(spec, CastingReader(file.shapes, file.read, device, dtype), name=file.name)
