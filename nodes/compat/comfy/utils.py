"""`comfy.utils`: progress bars, resizing and file loading for custom nodes."""
from __future__ import annotations

import torch
from safetensors.torch import load_file

from engine.context import ProgressBar  # noqa: F401 (re-exported)
from engine.resize import bislerp, common_upscale, lanczos  # noqa: F401 (re-exported)

PROGRESS_BAR_ENABLED = True


def load_torch_file(path, safe_load: bool = True, device=None, return_metadata: bool = False):
    device = device or torch.device("cpu")
    if str(path).lower().endswith((".safetensors", ".sft")):
        data = load_file(str(path), device=str(device))
    else:
        data = torch.load(path, map_location=device, weights_only=True)
        if isinstance(data, dict) and "state_dict" in data:
            data = data["state_dict"]
    return (data, None) if return_metadata else data
