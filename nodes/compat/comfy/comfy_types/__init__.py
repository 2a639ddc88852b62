"""`comfy.comfy_types`: type hints for nodes (IO names, InputTypeDict, ComfyNodeABC) and for UNet wrappers."""
from __future__ import annotations

from typing import Callable

from .node_typing import IO, CheckLazyMixin, ComfyNodeABC, FileLocator, InputTypeDict  # noqa: F401

# model_function_wrapper's signature: (apply_model, {"input", "timestep", "c", "cond_or_uncond"}) -> tensor
UnetWrapperFunction = Callable
UnetApplyFunction = Callable
UnetApplyConds = dict
UnetParams = dict

__all__ = ["IO", "InputTypeDict", "ComfyNodeABC", "CheckLazyMixin", "FileLocator", "UnetWrapperFunction",
           "UnetApplyFunction", "UnetApplyConds", "UnetParams"]
