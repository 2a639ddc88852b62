"""Weights stored narrower than they compute (ComfyUI's "manual cast"): Linear weights kept in fp8 and cast to the
input's dtype as each layer runs, so an fp8 model file takes half the memory of its bf16 copy.

A file whose linear weights are fp8 keeps them so (UNETLoader's "default"); UNETLoader's fp8 weight dtypes narrow
any model's linear weights. Everything else (norms, biases, convolutions, embeddings) is in the compute dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
# UNETLoader's weight_dtype choices -> storage dtype ("_fast" asks for fp8 matmuls, which comfyd does not do).
WEIGHT_DTYPES = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
                 "fp8_e5m2": torch.float8_e5m2}


class CastLinear(torch.nn.Linear):
    """A Linear whose weight is stored in another dtype than it computes in: cast to the input's dtype per call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


def narrow_storage(network: torch.nn.Module, compute: torch.dtype, storage: torch.dtype | None = None, *,
                   skip: tuple[str, ...] = ()):
    """Make ``network``'s Linear weights stored in ``storage`` (None: keep those already fp8) and computed in
    ``compute``, but for the Linear layers whose names end with one of ``skip``; every other fp8 tensor is widened
    to ``compute``. Returns the network."""
    narrowed = set()
    for name, module in network.named_modules():
        if type(module) is not torch.nn.Linear or name.endswith(skip):
            continue
        weight = module.weight
        if storage is None and weight.dtype not in FP8_DTYPES:
            continue
        weight.data = weight.data.to(storage or weight.dtype)
        module.__class__ = CastLinear
        narrowed.add(id(weight))
    for tensor in [*network.parameters(), *network.buffers()]:
        if tensor.dtype in FP8_DTYPES and id(tensor) not in narrowed:
            tensor.data = tensor.data.to(compute)
    return network


def compute_dtype(network: torch.nn.Module) -> torch.dtype:
    """The dtype ``network`` computes in: its first parameter's that is not narrowed storage."""
    return next(p.dtype for p in network.parameters() if p.dtype not in FP8_DTYPES)
