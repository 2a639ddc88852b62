"""Loaded models: which device they live on, their dtype, weight patches (LoRA), and unloading.

Every model call goes through `running(model)`, which makes sure the weights are on the compute device and
carry exactly the patches the calling clone asks for (restoring the base weights exactly when it asks for
none). In low-VRAM mode weights go back to the CPU after each use.

The patch protocol: an owner's ``patches`` are ``(patch, strength)`` pairs applied in order. ``patch.deltas(target,
weights)`` maps parameter names to a change at strength 1 (computed when read); a patch may also have
``scales(target, weights)``, {parameter: factor} by which the weight as patched so far is multiplied before its
change is added (ComfyUI's ``strength_model``, which model merges use). ``weights`` are the network's weights as
loaded.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import gc
import logging
import os
import threading
import weakref
from typing import Callable, Iterator, Mapping

import torch

log = logging.getLogger("comfyd.models")


class _PatchState:
    """Per network: the (patch, strength) pairs applied now and the original values of every tensor they changed."""

    def __init__(self):
        self.applied: tuple = ()
        self.backup: dict[str, torch.Tensor] = {}


class ModelManager:
    # Kept free on the device for activations when deciding whether one more network fits.
    RESERVE_BYTES = 1 << 30
    # How many files of each kind stay cached (LRU); kinds not listed keep DEFAULT_CACHE_SIZE.
    CACHE_SIZES = {"loras": 16}
    DEFAULT_CACHE_SIZE = 2

    def __init__(self, device: torch.device, vram_mode: str = "normal"):
        self.device = torch.device(device)
        self.offload_device = torch.device("cpu")
        self.vram_mode = vram_mode
        self._files: collections.OrderedDict = collections.OrderedDict()
        # Keyed by the network itself, weakly: a freed network's state must not be found by a later one.
        self._patch_state: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.RLock()
        self._resident: collections.OrderedDict[int, weakref.ref] = collections.OrderedDict()

    # -- dtype policy (ComfyUI's): half precision on CUDA, fp32 on CPU ---------------------------------------

    def unet_dtype(self) -> torch.dtype:
        return torch.float16 if self.device.type == "cuda" else torch.float32

    def text_dtype(self) -> torch.dtype:
        return torch.float16 if self.device.type == "cuda" else torch.float32

    def vae_dtype(self) -> torch.dtype:
        return self.bf16_or_fp32()

    def bf16_or_fp32(self) -> torch.dtype:
        """For networks that overflow in fp16 (VAEs, DiTs, LLM text encoders): bf16 where CUDA has it."""
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32

    @property
    def load_device(self) -> torch.device:
        return self.offload_device if self.vram_mode == "low" else self.device

    # -- loading (cached by file identity) --------------------------------------------------------------------

    def cached(self, kind: str, path, build):
        """The object `build()` returns for (kind, file), reused while the file is unchanged."""
        stat = os.stat(path)
        key = (kind, os.fspath(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        value = build()
        with self._lock:
            self._files[key] = value
            same_kind = [k for k in self._files if k[0] == kind]
            for old in same_kind[:max(0, len(same_kind) - self.CACHE_SIZES.get(kind, self.DEFAULT_CACHE_SIZE))]:
                del self._files[old]
        return value

    def loaded_files(self) -> list[str]:
        """Paths of the model files held in memory now."""
        with self._lock:
            return [key[1] for key in self._files]

    def unload_all(self) -> None:
        with self._lock:
            self._files.clear()
            self._patch_state.clear()
            self._resident.clear()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- use ----------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self, owner):
        """Weights of `owner` (DiffusionModel / TextEncoder / VAE / ControlNet) on the device, with its patches."""
        used = list(networks(owner))
        with self._lock:
            for target, network in used:
                if _device_of(network) != self.device:
                    self._make_room(network, keep=[n for _, n in used])
                    self._move(network, self.device)
                self._mark_used(network)
                self._apply_patches(target, network, getattr(owner, "patches", ()))
            try:
                yield
            finally:
                if self.vram_mode == "low" and self.device != self.offload_device:
                    for _, network in used:
                        self._move(network, self.offload_device)

    # -- VRAM: networks on the device, least recently used first, offloaded when another one needs the room ------

    def _move(self, network: torch.nn.Module, device: torch.device) -> None:
        network.to(device)

    def free_bytes(self) -> int:
        free, _ = torch.cuda.mem_get_info(self.device)
        return free

    def _mark_used(self, network: torch.nn.Module) -> None:
        self._resident.pop(id(network), None)
        self._resident[id(network)] = weakref.ref(network)

    def _make_room(self, network: torch.nn.Module, keep: list) -> None:
        """Offload least recently used networks until `network` fits beside a working reserve (normal mode)."""
        if self.device.type == "cpu" or self.vram_mode == "high":
            return
        needed = _size(network) + self.RESERVE_BYTES
        free = self.free_bytes()
        for key, ref in list(self._resident.items()):
            if free >= needed:
                break
            other = ref()
            if other is None:
                del self._resident[key]
                continue
            if any(other is k for k in keep) or _device_of(other) != self.device:
                continue
            self._move(other, self.offload_device)
            del self._resident[key]
            free += _size(other)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def applied_patches(self, network: torch.nn.Module) -> tuple:
        """The (patch, strength) pairs on `network` now (those of the clone that ran it last)."""
        state = self._patch_state.get(network)
        return state.applied if state is not None else ()

    def _apply_patches(self, target: str, network: torch.nn.Module, patches) -> None:
        state = self._patch_state.setdefault(network, _PatchState())
        wanted = active_patches(patches)
        if same_patches(wanted, state.applied):
            return
        params = dict(network.named_parameters())
        with torch.no_grad():
            for name, original in state.backup.items():
                params[name].copy_(original.to(params[name].device))
            state.backup.clear()
            # One parameter at a time, so that a merge (which changes every weight) never holds a second copy of
            # the model. Each change is computed before its weight is written: a merge may read this very weight
            # as its second model's (the same file loaded twice, or a clone).
            for name, change in weight_changes(target, params, wanted).items():
                param = params[name]
                delta = change().to(param.device)
                state.backup[name] = param.detach().to(self.offload_device, copy=True)
                # The patches' changes are summed in float32 and rounded into the weight's dtype once, as ComfyUI.
                param.copy_((param.float() + delta).to(param.dtype))
        state.applied = wanted

    def patched_weights(self, owner) -> dict[str, Mapping[str, torch.Tensor]]:
        """{patch target: {parameter: its value with `owner`'s patches, float32, computed when read}} for each network
        `owner` runs, whatever patches the networks carry now; the networks are left as they are."""
        out = {}
        with self._lock:
            for target, network in networks(owner):
                state = self._patch_state.get(network)
                out[target] = _patched(target, _LoadedWeights(network, state.backup if state else {}),
                                       active_patches(getattr(owner, "patches", ())))
        return out


def patched_weights(owner) -> dict[str, Mapping[str, torch.Tensor]]:
    """ModelManager.patched_weights of `owner`'s manager; for an owner without one, of its networks as they are."""
    manager = getattr(owner, "manager", None)
    if manager is not None:
        return manager.patched_weights(owner)
    patches = active_patches(getattr(owner, "patches", ()))
    return {target: _patched(target, _LoadedWeights(network, {}), patches) for target, network in networks(owner)}


def active_patches(patches) -> tuple:
    """The (patch, strength) pairs that change anything: those of strength 0 are left out."""
    return tuple((patch, float(strength)) for patch, strength in patches if strength != 0)


def weight_changes(target: str, weights: Mapping[str, torch.Tensor],
                   patches) -> dict[str, Callable[[], torch.Tensor]]:
    """{parameter: a function giving its total change (float32, on the weight's device)} when ``patches`` ((patch,
    strength) pairs) are applied in order to ``weights``, the network's weights as loaded."""
    plans = [(patch.deltas(target, weights), _scales(patch, target, weights), strength) for patch, strength in patches]
    names = dict.fromkeys(name for deltas, scales, _ in plans for name in (*scales, *deltas))
    return {name: functools.partial(_change, name, weights, plans) for name in names}


def _scales(patch, target: str, weights: Mapping[str, torch.Tensor]) -> Mapping[str, float]:
    scales = getattr(patch, "scales", None)
    return scales(target, weights) if scales is not None else {}


def _change(name: str, weights: Mapping[str, torch.Tensor], plans) -> torch.Tensor:
    device = weights[name].device
    total = torch.zeros((), device=device)
    for deltas, scales, strength in plans:
        factor = scales.get(name, 1.0)
        if factor != 1.0:  # the weight so far, (loaded + total), times factor: as a change to the loaded weight
            total = total * factor + weights[name].to(device, torch.float32) * (factor - 1.0)
        if name in deltas:
            total = total + deltas[name].to(device, torch.float32) * strength
    return total.expand(weights[name].shape)


def _patched(target: str, weights: Mapping[str, torch.Tensor], patches) -> Mapping[str, torch.Tensor]:
    changes = weight_changes(target, weights, patches)

    def value(name: str) -> torch.Tensor:
        weight = weights[name].float()
        return weight + changes[name]() if name in changes else weight

    return LazyTensors({name: functools.partial(value, name) for name in weights})


class _LoadedWeights(Mapping):
    """A network's weights as loaded: the saved originals of those a patch changed now, the others as they are.
    Looked up when read, so a weight written while patches are applied still reads as its original."""

    def __init__(self, network: torch.nn.Module, backup: dict[str, torch.Tensor]):
        self._params, self._backup = dict(network.named_parameters()), backup

    def __getitem__(self, name: str) -> torch.Tensor:
        original = self._backup.get(name)
        return (original if original is not None else self._params[name]).detach()

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)


class LazyTensors(Mapping):
    """Name -> tensor, each computed when read, so a whole model's worth never sits in memory at once (the patch
    protocol's deltas, patched weights)."""

    def __init__(self, plan: dict[str, Callable[[], torch.Tensor]]):
        self._plan = plan

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._plan[name]()

    def __contains__(self, name: object) -> bool:
        return name in self._plan

    def __iter__(self) -> Iterator[str]:
        return iter(self._plan)

    def __len__(self) -> int:
        return len(self._plan)


def same_patches(a: tuple, b: tuple) -> bool:
    """Whether two (patch, strength) sequences are the same patches in the same order and strengths. Compared by
    identity: an id could be reused by a new object after the old one is freed."""
    return len(a) == len(b) and all(pa is pb and sa == sb for (pa, sa), (pb, sb) in zip(a, b))


def networks(owner):
    """(patch target name, torch module) pairs an owner runs."""
    if hasattr(owner, "unet"):
        yield "unet", owner.unet
    elif hasattr(owner, "models"):
        yield from ((f"clip_{name}", model) for name, model in owner.models.items())
    elif hasattr(owner, "autoencoder"):
        yield "vae", owner.autoencoder
    elif hasattr(owner, "control_model"):
        yield "control", owner.control_model
    elif hasattr(owner, "image_encoder"):
        yield "clip_vision", owner.image_encoder


def _size(network: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in network.parameters()) + \
        sum(t.numel() * t.element_size() for t in network.buffers())


def _device_of(network: torch.nn.Module) -> torch.device:
    parameter = next(network.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
