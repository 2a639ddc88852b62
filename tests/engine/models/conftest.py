"""Checkpoint files for the model tests: each tiny family written once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import checkpoints
from tests.golden import checkpoint as parity_checkpoint

WRITERS = {
    "sd1": checkpoints.write_sd15,
    "sd2": checkpoints.write_sd2,
    "sdxl": checkpoints.write_sdxl,
    "sdxl_refiner": checkpoints.write_sdxl_refiner,
}


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def checkpoint_files(checkpoint_dir) -> dict[str, Path]:
    """family -> a tiny ``.safetensors`` checkpoint of that family (seed 0, fp16 like released files)."""
    return {family: write(checkpoint_dir / f"{family}.safetensors") for family, write in WRITERS.items()}


@pytest.fixture(scope="session")
def parity_shapes():
    """profile -> {key: shape} of the parity checkpoint's family (tests/golden/checkpoint.py), without writing it."""
    return parity_checkpoint.shapes
