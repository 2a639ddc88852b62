"""Deterministic ESRGAN (RRDBNet) upscale models for the parity cases, in both key layouts spandrel reads:
the original ``model.0 ... model.1.sub.N.RDBr.convc.0 ...`` one (as a ``.pth`` pickle, the way most are
released) and BasicSR's ``conv_first / body.N.rdbr.convc / conv_up ...`` (as safetensors). The layouts come from
tests/fixtures/upscalers.py, the values from tests/golden/seeded.py (zero biases, N(0, 1/fan_in) weights), except
the last conv's bias: OUTPUT_BIAS centres the random network's zero-mean output, so few pixels clip at 0 or 1.

    python -m tests.golden.upscaler MODELS/upscale_models     # every file of PARITY_UPSCALERS into that folder
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.fixtures.upscalers import esrgan_shapes

from . import seeded

FEATURES = 16  # RRDBNet's trunk width (64 in released models)
BLOCKS = 1  # RRDB blocks (23 in released models)
OUTPUT_BIAS = 0.5


@dataclass(frozen=True)
class Upscaler:
    seed: int
    scale: int
    new_layout: bool


# The files the parity cases load from models/upscale_models.
PARITY_UPSCALERS = {"parity-esrgan-x4.pth": Upscaler(1, 4, new_layout=False),
                    "parity-esrgan-x2.safetensors": Upscaler(2, 2, new_layout=True)}


def make_upscaler(spec: Upscaler) -> dict[str, np.ndarray]:
    shapes = esrgan_shapes(spec.scale, FEATURES, BLOCKS, new_layout=spec.new_layout)
    tensors = seeded.fill(shapes, spec.seed, dtype=np.float32)
    tensors[list(shapes)[-1]] += OUTPUT_BIAS  # the shapes are in network order: the last is the output bias
    return tensors


def fingerprint(spec: Upscaler) -> str:
    return seeded.digest(make_upscaler(spec))


def write_upscaler(path: str | Path, spec: Upscaler) -> Path:
    return seeded.save(make_upscaler(spec), path, "tests/golden/upscaler.py", spec.seed)


def write_parity_upscalers(folder: str | Path) -> list[Path]:
    return [write_upscaler(Path(folder) / name, spec) for name, spec in PARITY_UPSCALERS.items()]


def main(argv: list[str] | None = None) -> int:
    return seeded.cli(__doc__, "the models/upscale_models folder to write PARITY_UPSCALERS into",
                      write_parity_upscalers, argv)


if __name__ == "__main__":
    raise SystemExit(main())
