"""A deterministic SD1.5 inpainting checkpoint for the parity cases: the parity checkpoint with a 9-channel UNet
input.

An inpainting UNet reads the noisy latent plus five more channels: the mask and the masked image's latent. The
file holds exactly the tensors of the parity checkpoint (checkpoint.py), except the UNet's
first conv: its four latent channels are kept and five seeded ones (tests/golden/seeded.py) are appended, with
EXTRA_GAIN times the usual N(0, 1/fan_in) spread so that what the sampler feeds them moves the image far beyond the
parity tolerance. Upstream ComfyUI detects it as an SD1.5 inpainting model from that conv's input width alone.

    python -m tests.golden.inpaint MODELS/checkpoints     # every file of PARITY_INPAINT into that folder
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import cases, checkpoint, seeded

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
EXTRA_CHANNELS = 5  # mask + masked-image latent
EXTRA_GAIN = 3.0
# The files the inpainting cases load from models/checkpoints: {file name: seed of the extra channels}.
PARITY_INPAINT = {cases.INPAINT_CHECKPOINT: 6}
GENERATOR = "tests/golden/inpaint.py"


def make_inpaint(seed: int) -> dict[str, np.ndarray]:
    tensors = checkpoint.build()
    conv = tensors[CONV_IN]
    extra = seeded.value(CONV_IN, (conv.shape[0], EXTRA_CHANNELS, *conv.shape[2:]), seed, EXTRA_GAIN)
    return {**tensors, CONV_IN: np.concatenate([conv, extra.astype(conv.dtype)], axis=1)}


def fingerprints() -> dict[str, str]:
    return {name: seeded.digest(make_inpaint(seed)) for name, seed in PARITY_INPAINT.items()}


def write_parity_inpaint(folder: str | Path) -> list[Path]:
    return [seeded.save(make_inpaint(seed), Path(folder) / name, GENERATOR, seed)
            for name, seed in PARITY_INPAINT.items()]


def main(argv: list[str] | None = None) -> int:
    return seeded.cli(__doc__, "the models/checkpoints folder to write PARITY_INPAINT into", write_parity_inpaint,
                      argv)


if __name__ == "__main__":
    raise SystemExit(main())
