"""`comfy.float`: casting computed weights back to a model's storage dtype."""
from __future__ import annotations

import torch

_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def stochastic_rounding(value: torch.Tensor, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """`value` as `dtype`. Wider float dtypes are a plain cast, as in ComfyUI; ComfyUI's seeded stochastic rounding
    to fp8 is not available in comfyd and raises NotImplementedError."""
    if dtype in _FP8:
        raise NotImplementedError("comfyd has no stochastic rounding to fp8 (comfy.float.stochastic_rounding)")
    return value.to(dtype=dtype)
