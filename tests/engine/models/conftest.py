"""Checkpoint files for the model tests: each tiny family written once per session."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.fixtures import checkpoints

MAKE_CHECKPOINT = Path(__file__).resolve().parents[3].parent / "shared" / "tools" / "make_checkpoint.py"

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
def make_checkpoint():
    """The shared make_checkpoint.py tool as a module (it describes the real SD1.5 key layout)."""
    if not MAKE_CHECKPOINT.is_file():
        pytest.skip(f"{MAKE_CHECKPOINT} is not present in this checkout")
    spec = importlib.util.spec_from_file_location("make_checkpoint", MAKE_CHECKPOINT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_checkpoint_shapes(make_checkpoint):
    """profile -> {key: shape} of what make_checkpoint.py writes, without writing it."""
    def shapes(profile: str) -> dict[str, tuple[int, ...]]:
        out = dict(make_checkpoint.unet_shapes(*make_checkpoint.PROFILES[profile]))
        out.update(make_checkpoint.vae_shapes())
        out.update(make_checkpoint.clip_shapes())
        return out
    return shapes
