"""`comfy.model_management`: devices, dtypes, memory and interrupts for custom nodes, backed by the running
prompt's context and the engine's ModelManager."""
from __future__ import annotations

import torch

from engine import context, devices
from engine.context import Interrupted as InterruptProcessingException  # noqa: F401 (re-exported)

OOM_EXCEPTION = torch.cuda.OutOfMemoryError


def _manager():
    return context.model_manager()


def get_torch_device() -> torch.device:
    return _manager().device


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return _manager().offload_device


def text_encoder_device() -> torch.device:
    return _manager().load_device


def vae_device() -> torch.device:
    return _manager().load_device


text_encoder_offload_device = vae_offload_device = unet_offload_device


def unet_dtype(*args, **kwargs) -> torch.dtype:
    return _manager().unet_dtype()


def text_encoder_dtype(*args, **kwargs) -> torch.dtype:
    return _manager().text_dtype()


def vae_dtype(*args, **kwargs) -> torch.dtype:
    return _manager().vae_dtype()


def is_device_type(device, kind: str) -> bool:
    return getattr(device, "type", None) == kind


def is_device_cpu(device) -> bool:
    return is_device_type(device, "cpu")


def is_device_mps(device) -> bool:
    return is_device_type(device, "mps")


def is_device_cuda(device) -> bool:
    return is_device_type(device, "cuda")


def is_nvidia() -> bool:
    return get_torch_device().type == "cuda" and torch.version.cuda is not None


def xformers_enabled() -> bool:
    """comfyd computes attention with PyTorch's scaled_dot_product_attention, never xformers."""
    return False


xformers_enabled_vae = xformers_enabled


def pytorch_attention_enabled() -> bool:
    return True


def should_use_fp16(device=None, *args, **kwargs) -> bool:
    return is_device_cuda(device or get_torch_device())


def should_use_bf16(device=None, *args, **kwargs) -> bool:
    device = device or get_torch_device()
    return is_device_cuda(device) and torch.cuda.is_bf16_supported()


def device_supports_non_blocking(device) -> bool:
    return is_device_cuda(device)


def get_autocast_device(device) -> str:
    return getattr(device, "type", "cuda")


def cast_to_device(tensor: torch.Tensor, device, dtype, copy: bool = False) -> torch.Tensor:
    return tensor.to(device=device, dtype=dtype, copy=copy, non_blocking=device_supports_non_blocking(device))


def get_total_memory(dev=None, torch_total_too: bool = False):
    stats = devices.device_stats(dev or get_torch_device())
    return (stats["vram_total"], stats["torch_vram_total"]) if torch_total_too else stats["vram_total"]


def get_free_memory(dev=None, torch_free_too: bool = False):
    stats = devices.device_stats(dev or get_torch_device())
    return (stats["vram_free"], stats["torch_vram_free"]) if torch_free_too else stats["vram_free"]


def load_models_gpu(models, memory_required: int = 0, force_patch_weights: bool = False,
                    minimum_memory_required=None, force_full_load: bool = False) -> None:
    """Puts the models' weights (with their patches) on the device, where they stay until another model needs
    the room (or, with --lowvram, until the next model runs)."""
    for model in models:
        with _manager().running(model):
            pass


def load_model_gpu(model) -> None:
    load_models_gpu([model])


def free_memory(memory_required: int, device, keep_loaded=()) -> None:
    """comfyd frees the device's memory as models need it; asking for room ahead only empties the cache."""
    soft_empty_cache()


def cleanup_models(*args, **kwargs) -> None:
    """comfyd drops models nothing refers to by itself."""


def processing_interrupted() -> bool:
    ctx = context.current()
    return ctx is not None and ctx.interrupt.is_set()


def throw_exception_if_processing_interrupted() -> None:
    context.check_interrupted()


def interrupt_current_processing(value: bool = True) -> None:
    ctx = context.current()
    if ctx is not None:
        ctx.interrupt.set() if value else ctx.interrupt.clear()


def soft_empty_cache(force: bool = False) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def unload_all_models() -> None:
    _manager().unload_all()
