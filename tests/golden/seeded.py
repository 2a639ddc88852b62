"""Seeded tensors for the parity model files: each tensor depends only on (seed, its name), as in lora.py.

Values come from numpy's PCG64 seeded with (seed, crc32(name)); weights (2-D and up) are N(0, gain^2 / fan_in),
1-D ``weight`` tensors are norm scales (ones) and other 1-D tensors biases (zeros), the way
the parity checkpoint (checkpoint.py) is filled. `digest` identifies a file by what it holds.
"""
from __future__ import annotations

import argparse
import hashlib
import zlib
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

Shapes = Mapping[str, tuple[int, ...]]


def value(name: str, shape: tuple[int, ...], seed: int, gain: float = 1.0) -> np.ndarray:
    if len(shape) == 1:
        return (np.ones if name.endswith("weight") else np.zeros)(shape, dtype=np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(gain / np.sqrt(np.prod(shape[1:])))


def fill(shapes: Shapes, seed: int, gain: Callable[[str], float] = lambda name: 1.0,
         dtype=np.float16) -> dict[str, np.ndarray]:
    """Every tensor of `shapes` in `dtype`; `gain(name)` scales a weight's standard deviation."""
    return {name: value(name, tuple(shape), seed, gain(name)).astype(dtype) for name, shape in sorted(shapes.items())}


def digest(tensors: Mapping[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of `tensors`, whatever file layout holds them."""
    out = hashlib.sha256()
    for name, array in sorted(tensors.items()):
        out.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        out.update(np.ascontiguousarray(array).tobytes())
    return out.hexdigest()


def save(tensors: Mapping[str, np.ndarray], path: str | Path, generator: str, seed: int) -> Path:
    """``.safetensors`` (the generator module and seed in its metadata) by suffix, else a torch.save pickle of the
    state dict, the way many released files come."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(dict(tensors), str(path), metadata={"generator": generator, "seed": str(seed)})
    else:
        import torch

        torch.save({name: torch.from_numpy(array) for name, array in tensors.items()}, path)
    return path


def cli(doc: str, folder_help: str, write: Callable[[Path], list[Path]], argv: list[str] | None = None) -> int:
    """A generator module's command line: write its parity files into the folder given."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("out", type=Path, help=folder_help)
    for path in write(parser.parse_args(argv).out):
        print(f"wrote {path}")
    return 0
