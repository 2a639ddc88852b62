"""`comfy.ldm.lumina.model`: the SwiGLU feed-forward block of Lumina-style models, which packs patch or call
unbound on their own modules."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class FeedForward(torch.nn.Module):
    def __init__(self, dim: int, hidden_dim: int, multiple_of: int, ffn_dim_multiplier: float | None,
                 operation_settings: dict | None = None):
        super().__init__()
        settings = operation_settings or {}
        linear = getattr(settings.get("operations"), "Linear", torch.nn.Linear)
        if ffn_dim_multiplier is not None:
            hidden_dim = int(ffn_dim_multiplier * hidden_dim)
        hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
        kwargs = {"bias": False, "device": settings.get("device"), "dtype": settings.get("dtype")}
        self.w1 = linear(dim, hidden_dim, **kwargs)
        self.w2 = linear(hidden_dim, dim, **kwargs)
        self.w3 = linear(dim, hidden_dim, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
