"""Textual-inversion embeddings from models/embeddings, in the file layouts ComfyUI reads."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

log = logging.getLogger("comfyd.embeddings")

EXTENSIONS = (".safetensors", ".pt", ".bin")


def find_embedding_file(roots: list[Path], name: str) -> Path | None:
    from ..folders import safe_join

    for root in roots:
        base = safe_join(root, name, allow_symlinks=True)
        if base is None:
            continue
        if base.is_file():
            return base
        for ext in EXTENSIONS:
            candidate = base.with_name(base.name + ext)
            if candidate.is_file():
                return candidate
    return None


def _pick(data, size: int, key: str) -> torch.Tensor | None:
    if isinstance(data, list):  # a list of {name: tensor}: keep the vectors of this encoder's width
        rows = [t.reshape(-1, t.shape[-1]) for entry in data for t in entry.values() if t.shape[-1] == size]
        return torch.cat(rows) if rows else None
    if "string_to_param" in data:  # A1111 / textual_inversion .pt
        return next(iter(data["string_to_param"].values()))
    if key in data:  # SDXL files keep one tensor per encoder ("clip_l", "clip_g")
        return data[key]
    bundled = [v for k, v in data.items() if k.startswith("bundle_emb.") and
               (k.endswith(".string_to_param.*") or k.endswith(f".{key}"))]
    if bundled:
        return bundled[0]
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
    return tensors[0] if tensors else None


def load_embedding(roots: list[Path], name: str, size: int, key: str) -> torch.Tensor | None:
    """The [n, size] vectors of embedding `name`, or None when it is missing or unreadable."""
    path = find_embedding_file(roots, name)
    if path is None:
        return None
    try:
        if path.suffix.lower() == ".safetensors":
            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
        vectors = _pick(data, size, key)
    except Exception as ex:
        log.warning("cannot load embedding %s: %s", name, ex)
        return None
    if vectors is None:
        return None
    return vectors.reshape(-1, vectors.shape[-1]).float()
