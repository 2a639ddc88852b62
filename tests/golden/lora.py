"""A deterministic kohya-format LoRA for the tiny parity checkpoint (make_checkpoint.py --profile tiny).

Layers are named the way kohya's trainer names them: ``lora_unet_<diffusers module path>`` for the UNet (so the
loader must map diffusers block names onto the checkpoint's LDM layout) and ``lora_te_text_model_encoder_layers_N_
<part>`` for CLIP-L. Each layer holds ``lora_down.weight`` (rank x in [x kh x kw]), ``lora_up.weight``
(out x rank [x 1 x 1]) in float16 and a 0-d float32 ``alpha``, as kohya writes them.

Values come from numpy's PCG64 seeded with (seed, crc32(layer)), so a file depends only on its seed. Factor scales
make ``up @ down`` about as large as the weight it adapts (std 1/sqrt(fan_in)); alpha = rank / 2 halves that,
which moves the images far beyond the parity tolerance without saturating them.

    python tests/golden/lora.py MODELS/loras            # every file of PARITY_LORAS into that folder
    python tests/golden/lora.py OUT.safetensors --seed N
"""
from __future__ import annotations

import argparse
import hashlib
import zlib
from pathlib import Path

import numpy as np

RANK = 4
ALPHA = RANK / 2
# The files the parity cases load from models/loras: {file name: seed}.
PARITY_LORAS = {"parity-lora-s1.safetensors": 1, "parity-lora-s2.safetensors": 2}

_ATTENTION = "down_blocks_0_attentions_0_"
_BLOCK = _ATTENTION + "transformer_blocks_0_"
# {kohya layer name: (out, in, kernel)} of the tiny UNet (model_channels 320, one level, transformer in the input
# block only) and CLIP-L (width 768, MLP 3072): self- and cross-attention, the feed-forward, 1x1 projection convs,
# 3x3 resnet convs (one with 640 inputs from the skip concat), a resnet shortcut and a time-embedding projection.
LAYERS: dict[str, tuple[int, int, int]] = {
    "lora_unet_" + _BLOCK + "attn1_to_q": (320, 320, 0),
    "lora_unet_" + _BLOCK + "attn1_to_k": (320, 320, 0),
    "lora_unet_" + _BLOCK + "attn1_to_v": (320, 320, 0),
    "lora_unet_" + _BLOCK + "attn1_to_out_0": (320, 320, 0),
    "lora_unet_" + _BLOCK + "attn2_to_q": (320, 320, 0),
    "lora_unet_" + _BLOCK + "attn2_to_k": (320, 768, 0),
    "lora_unet_" + _BLOCK + "attn2_to_v": (320, 768, 0),
    "lora_unet_" + _BLOCK + "attn2_to_out_0": (320, 320, 0),
    "lora_unet_" + _BLOCK + "ff_net_0_proj": (2560, 320, 0),
    "lora_unet_" + _BLOCK + "ff_net_2": (320, 1280, 0),
    "lora_unet_" + _ATTENTION + "proj_in": (320, 320, 1),
    "lora_unet_" + _ATTENTION + "proj_out": (320, 320, 1),
    "lora_unet_down_blocks_0_resnets_0_conv1": (320, 320, 3),
    "lora_unet_down_blocks_0_resnets_0_time_emb_proj": (320, 1280, 0),
    "lora_unet_up_blocks_0_resnets_0_conv2": (320, 320, 3),
    "lora_unet_up_blocks_0_resnets_1_conv1": (320, 640, 3),
    "lora_unet_up_blocks_0_resnets_1_conv_shortcut": (320, 640, 1),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (768, 768, 0),
    "lora_te_text_model_encoder_layers_0_self_attn_v_proj": (768, 768, 0),
    "lora_te_text_model_encoder_layers_5_self_attn_k_proj": (768, 768, 0),
    "lora_te_text_model_encoder_layers_5_self_attn_out_proj": (768, 768, 0),
    "lora_te_text_model_encoder_layers_11_mlp_fc1": (3072, 768, 0),
    "lora_te_text_model_encoder_layers_11_mlp_fc2": (768, 3072, 0),
}


def layer_factors(layer: str, shape: tuple[int, int, int], seed: int) -> dict[str, np.ndarray]:
    """The three tensors of one layer; kernel 0 means a Linear weight (2-D factors)."""
    out, inp, kernel = shape
    rng = np.random.default_rng([seed, zlib.crc32(layer.encode())])
    down_shape = (RANK, inp) + ((kernel, kernel) if kernel else ())
    up_shape = (out, RANK) + ((1, 1) if kernel else ())
    fan_in = inp * max(kernel, 1) ** 2
    down = rng.standard_normal(down_shape, dtype=np.float32) / np.sqrt(fan_in)
    up = rng.standard_normal(up_shape, dtype=np.float32) / np.sqrt(RANK)
    return {f"{layer}.lora_down.weight": down.astype(np.float16),
            f"{layer}.lora_up.weight": up.astype(np.float16),
            f"{layer}.alpha": np.array(ALPHA, dtype=np.float32)}


def make_lora(seed: int) -> dict[str, np.ndarray]:
    tensors = {}
    for layer, shape in LAYERS.items():
        tensors.update(layer_factors(layer, shape, seed))
    return tensors


def fingerprint(seed: int) -> str:
    """sha256 over make_lora(seed)'s names, dtypes, shapes and bytes: what the file holds, whatever its layout."""
    digest = hashlib.sha256()
    for key, array in sorted(make_lora(seed).items()):
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def write_lora(path: str | Path, seed: int) -> Path:
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(make_lora(seed), str(path), metadata={"generator": "tests/golden/lora.py", "seed": str(seed),
                                                    "ss_network_dim": str(RANK), "ss_network_alpha": str(ALPHA)})
    return path


def write_parity_loras(folder: str | Path) -> list[Path]:
    return [write_lora(Path(folder) / name, seed) for name, seed in PARITY_LORAS.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a folder (writes PARITY_LORAS) or, with --seed, one file")
    parser.add_argument("--seed", type=int, help="write one LoRA of this seed to OUT")
    args = parser.parse_args(argv)
    written = write_parity_loras(args.out) if args.seed is None else [write_lora(args.out, args.seed)]
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
