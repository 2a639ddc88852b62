"""A deterministic T2I-Adapter for the parity cases, and the UNet it needs.

An SD1 T2I-Adapter adds its first feature map to the third LDM input block's output (the second res block of the
first level) and the others further down; the tiny parity checkpoint's UNet stops after its second input block,
so an adapter cannot act on it (upstream skips the features that have no block). The adapter cases therefore take
CLIP and VAE from that checkpoint and load PARITY_UNETS with UNETLoader: the same SD1.5 family (320 channels,
CLIP-L context, conv proj_in) with two res blocks in its one level, transformers on both sides and a middle block,
saved without the ``model.diffusion_model.`` prefix as UNet-only files are.

The adapter is TencentARC's "light" kind (ComfyUI builds it for 320/640/1280/1280 features, four res blocks per
level, from ``body.0.in_conv``), keyed as released. Layouts come from tests/fixtures, values from
tests/golden/seeded.py.

    python -m tests.golden.adapter MODELS     # PARITY_ADAPTERS into MODELS/controlnet, PARITY_UNETS into
                                              # MODELS/diffusion_models
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures.checkpoints import UNetLayout, unet_shapes
from tests.fixtures.controlnets import adapter_shapes

from . import seeded

ADAPTER_UNET = UNetLayout(320, (1,), 2, (1,), 1, context_dim=768, linear_proj=False)
LIGHT_CHANNELS = (320, 640, 1280, 1280)  # what ComfyUI assumes for every light adapter
LIGHT_BLOCKS = 4
# The files the adapter cases load: {file name: seed}; adapters from models/controlnet, UNets from
# models/diffusion_models.
PARITY_ADAPTERS = {"parity-t2i-light-s3.safetensors": 3}
PARITY_UNETS = {"parity-unet-2rb-s4.safetensors": 4}
GENERATOR = "tests/golden/adapter.py"


def make_adapter(seed: int) -> dict[str, np.ndarray]:
    return seeded.fill(adapter_shapes(LIGHT_CHANNELS, kind="light", blocks_per_level=LIGHT_BLOCKS), seed)


def make_unet(seed: int) -> dict[str, np.ndarray]:
    return seeded.fill(unet_shapes(ADAPTER_UNET, prefix=""), seed)


def fingerprints() -> dict[str, str]:
    """{file name: digest} of every file of PARITY_ADAPTERS and PARITY_UNETS."""
    return {**{name: seeded.digest(make_adapter(seed)) for name, seed in PARITY_ADAPTERS.items()},
            **{name: seeded.digest(make_unet(seed)) for name, seed in PARITY_UNETS.items()}}


def write_parity_files(models: str | Path) -> list[Path]:
    models = Path(models)
    return ([seeded.save(make_adapter(seed), models / "controlnet" / name, GENERATOR, seed)
             for name, seed in PARITY_ADAPTERS.items()]
            + [seeded.save(make_unet(seed), models / "diffusion_models" / name, GENERATOR, seed)
               for name, seed in PARITY_UNETS.items()])


def main(argv: list[str] | None = None) -> int:
    return seeded.cli(__doc__, "a models folder (controlnet/ and diffusion_models/ inside)", write_parity_files,
                      argv)


if __name__ == "__main__":
    raise SystemExit(main())
