"""`comfy.model_management`: devices and interrupts for custom nodes, backed by the running prompt's context."""
from __future__ import annotations

import torch

from engine import context
from engine.context import Interrupted as InterruptProcessingException  # noqa: F401 (re-exported)


def get_torch_device() -> torch.device:
    return context.model_manager().device


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


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
    context.model_manager().unload_all()
