"""Deterministic ControlNets for the tiny parity checkpoint (make_checkpoint.py --profile tiny), in the original
single-file layout: the input half of an LDM UNet plus ``input_hint_block``, ``zero_convs`` and
``middle_block_out``, all under ``control_model.`` (tests/fixtures/controlnets.py knows the layout).

The network copies the parity UNet's input side (model_channels 320, one level of one res block with a
transformer, CLIP-L's 768-wide context) so its two zero-conv outputs land on the UNet's two skip connections;
it has the usual res/transformer/res middle block, whose output the UNet adds where its (absent) middle block
would be. Tensors come from tests/golden/seeded.py. Released ControlNets' zero convs are trained away from zero;
here they are plain N(0, 1/fan_in) weights, so a ControlNet at strength ~0.8 moves the images far beyond the
parity tolerance without saturating them.

    python -m tests.golden.controlnet MODELS/controlnet     # every file of PARITY_CONTROLNETS into that folder
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures.checkpoints import UNetLayout
from tests.fixtures.controlnets import controlnet_shapes

from . import seeded

# The parity checkpoint's UNet: 320 channels, one level, one res block with a depth-1 transformer, conv proj_in.
PARITY_UNET = UNetLayout(320, (1,), 1, (1,), 1, context_dim=768, linear_proj=False)
# The files the parity cases load from models/controlnet: {file name: seed}.
PARITY_CONTROLNETS = {"parity-controlnet-s1.safetensors": 1, "parity-controlnet-s2.safetensors": 2}


def make_controlnet(seed: int) -> dict[str, np.ndarray]:
    return seeded.fill(controlnet_shapes(PARITY_UNET), seed)


def fingerprint(seed: int) -> str:
    return seeded.digest(make_controlnet(seed))


def write_controlnet(path: str | Path, seed: int) -> Path:
    return seeded.save(make_controlnet(seed), path, "tests/golden/controlnet.py", seed)


def write_parity_controlnets(folder: str | Path) -> list[Path]:
    return [write_controlnet(Path(folder) / name, seed) for name, seed in PARITY_CONTROLNETS.items()]


def main(argv: list[str] | None = None) -> int:
    return seeded.cli(__doc__, "the models/controlnet folder to write PARITY_CONTROLNETS into",
                      write_parity_controlnets, argv)


if __name__ == "__main__":
    raise SystemExit(main())
