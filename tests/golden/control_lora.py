"""A deterministic Control-LoRA for the tiny parity checkpoint (make_checkpoint.py --profile tiny), in Stability's
layout (tests/fixtures/controlnets.py knows it): bare LDM names, a ``lora_controlnet`` marker, rank-RANK
``.up``/``.down`` factors for the weights of the layers the ControlNet shares with the checkpoint's UNet and full
tensors for the rest.

The parity UNet (tests/golden/controlnet.py's PARITY_UNET) has no middle block, so the ControlNet ComfyUI builds
for it has a lone middle res block, which the file holds in full. Tensors come from tests/golden/seeded.py: each
factor is N(0, 1/fan_in), so up @ down changes a shared weight about as much as the weight itself and a wrong
merge shows far beyond the parity tolerance.

    python -m tests.golden.control_lora MODELS/controlnet     # every file of PARITY_CONTROL_LORAS there
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures.controlnets import control_lora_shapes

from . import seeded
from .controlnet import PARITY_UNET

RANK = 8
# The files the parity cases load from models/controlnet: {file name: seed}.
PARITY_CONTROL_LORAS = {"parity-control-lora-s5.safetensors": 5}


def make_control_lora(seed: int) -> dict[str, np.ndarray]:
    return seeded.fill(control_lora_shapes(PARITY_UNET, rank=RANK, middle=False), seed)


def fingerprints() -> dict[str, str]:
    return {name: seeded.digest(make_control_lora(seed)) for name, seed in PARITY_CONTROL_LORAS.items()}


def write_parity_control_loras(folder: str | Path) -> list[Path]:
    return [seeded.save(make_control_lora(seed), Path(folder) / name, "tests/golden/control_lora.py", seed)
            for name, seed in PARITY_CONTROL_LORAS.items()]


def main(argv: list[str] | None = None) -> int:
    return seeded.cli(__doc__, "the models/controlnet folder to write PARITY_CONTROL_LORAS into",
                      write_parity_control_loras, argv)


if __name__ == "__main__":
    raise SystemExit(main())
