"""The parity checkpoint: a seeded random-weight SD1.5 single file in the original LDM layout that upstream ComfyUI
detects as SD1.5 (the golden images were made on it).

ComfyUI fixes the SD1.5 VAE's and CLIP-L's sizes, so those two are full size; the UNet keeps the widths the
detector needs (320 channels, 768-wide context, convolutional proj_in) but is cut to one level with one res block,
one input-side transformer, none on the output side and no middle block (PROFILES["tiny"]). "small" and "full"
describe larger UNets of the same family for detection tests; only their shapes are used.

UNET_640 is a UNet-only file (models/diffusion_models) of the same family reaching the UNet patch points the tiny
one lacks: a second level 640 channels wide (FreeU acts on 2x and 4x the base width) and a middle block with a
transformer (perturbed-attention guidance replaces its self-attention), without other transformers to keep it
small.

MERGE_PARTNER is NAME's twin drawn with another seed, the second model of the merge cases.

Values depend only on (seed, name): numpy's PCG64 seeded with (seed, crc32(name)); 2-D and larger weights are
N(0, 1/fan_in) (embeddings N(0, 0.02^2)), 1-D ``weight`` tensors are norm scales (ones), other 1-D tensors zeros.
The digest of what `build` returns is recorded in the golden manifest, so a change here shows as a parity failure
before any image is compared.

    python -m tests.golden.checkpoint MODELS     # NAME, MERGE_PARTNER into MODELS/checkpoints, UNET_640 into
                                                 # MODELS/diffusion_models
"""
from __future__ import annotations

import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from tests.fixtures.checkpoints import FULL, SD1_CLIP, clip_shapes, unet_shapes, vae_shapes

from . import seeded

_SD1 = FULL["sd1"]
PROFILES = {
    "tiny": replace(_SD1.unet, channel_mult=(1,), num_res_blocks=1, depth=(1,), depth_out=(0,), middle_depth=None),
    "small": replace(_SD1.unet, channel_mult=(1, 2), num_res_blocks=1, depth=(1, 1)),
    "full": _SD1.unet,
}
UNET_640_LAYOUT = replace(PROFILES["small"], depth=(1, 0), depth_out=(0, 0))
NAME = "tiny-sd15.safetensors"
SEED = 0
UNET_640 = "parity-unet-640-s7.safetensors"
UNET_640_SEED = 7
MERGE_PARTNER = "parity-sd15-s5.safetensors"
MERGE_PARTNER_SEED = 5
GENERATOR = "tests/golden/checkpoint.py"


def shapes(profile: str = "tiny") -> dict[str, tuple[int, ...]]:
    out = unet_shapes(PROFILES[profile])
    out.update(vae_shapes(_SD1.vae))
    out.update(clip_shapes(_SD1.text[0][2], SD1_CLIP))
    del out[SD1_CLIP + "embeddings.position_ids"]  # ComfyUI makes its own; the released SD1.5 file has none
    return out


def value(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    if len(shape) == 1:
        return (np.ones if name.endswith("weight") else np.zeros)(shape, dtype=np.float32)
    noise = np.random.default_rng([seed, zlib.crc32(name.encode())]).standard_normal(shape, dtype=np.float32)
    if "embedding" in name:
        return noise * 0.02
    # a float64 scale: the product is rounded once, to the file's dtype (the recorded digest depends on it)
    return noise * (1.0 / np.sqrt(np.float64(np.prod(shape[1:]))))


def build(seed: int = SEED, profile: str = "tiny", dtype=np.float16) -> dict[str, np.ndarray]:
    return {name: value(name, shape, seed).astype(dtype) for name, shape in sorted(shapes(profile).items())}


def build_unet_640(seed: int = UNET_640_SEED, dtype=np.float16) -> dict[str, np.ndarray]:
    return {name: value(name, shape, seed).astype(dtype)
            for name, shape in sorted(unet_shapes(UNET_640_LAYOUT, prefix="").items())}


def fingerprints() -> dict[str, str]:
    return {NAME: seeded.digest(build()), UNET_640: seeded.digest(build_unet_640()),
            MERGE_PARTNER: seeded.digest(build(MERGE_PARTNER_SEED))}


def write_parity_files(models: str | Path) -> list[Path]:
    models = Path(models)
    return [seeded.save(build(), models / "checkpoints" / NAME, GENERATOR, SEED),
            seeded.save(build_unet_640(), models / "diffusion_models" / UNET_640, GENERATOR, UNET_640_SEED),
            seeded.save(build(MERGE_PARTNER_SEED), models / "checkpoints" / MERGE_PARTNER, GENERATOR,
                        MERGE_PARTNER_SEED)]


def main(argv: list[str] | None = None) -> int:
    return seeded.cli(__doc__, "the models folder", write_parity_files, argv)


if __name__ == "__main__":
    raise SystemExit(main())
