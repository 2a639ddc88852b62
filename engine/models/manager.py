"""Loaded models: which device they live on, their dtype, weight patches (LoRA), and unloading.

Every model call goes through `running(model)`, which makes sure the weights are on the compute device and
carry exactly the patches the calling clone asks for (restoring the base weights exactly when it asks for
none). In low-VRAM mode weights go back to the CPU after each use.
"""
from __future__ import annotations

import collections
import contextlib
import gc
import logging
import os
import threading
import weakref

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
        networks = list(_networks(owner))
        with self._lock:
            for target, network in networks:
                if _device_of(network) != self.device:
                    self._make_room(network, keep=[n for _, n in networks])
                    self._move(network, self.device)
                self._mark_used(network)
                self._apply_patches(target, network, getattr(owner, "patches", ()))
            try:
                yield
            finally:
                if self.vram_mode == "low" and self.device != self.offload_device:
                    for _, network in networks:
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
        wanted = tuple((patch, float(strength)) for patch, strength in patches if strength != 0)
        if same_patches(wanted, state.applied):
            return
        params = dict(network.named_parameters())
        with torch.no_grad():
            for name, original in state.backup.items():
                params[name].copy_(original.to(params[name].device))
            state.backup.clear()
            # Sum every patch's change in float32 and round into the weight's dtype once, as ComfyUI does.
            totals: dict[str, torch.Tensor] = {}
            for patch, strength in wanted:
                for name, delta in patch.deltas(target, params).items():
                    change = delta.to(params[name].device, torch.float32) * strength
                    totals[name] = totals[name] + change if name in totals else change
            for name, change in totals.items():
                param = params[name]
                state.backup[name] = param.detach().to(self.offload_device, copy=True)
                param.copy_((param.float() + change).to(param.dtype))
        state.applied = wanted


def same_patches(a: tuple, b: tuple) -> bool:
    """Whether two (patch, strength) sequences are the same patches in the same order and strengths. Compared by
    identity: an id could be reused by a new object after the old one is freed."""
    return len(a) == len(b) and all(pa is pb and sa == sb for (pa, sa), (pb, sb) in zip(a, b))


def _networks(owner):
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
