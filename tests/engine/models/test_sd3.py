"""SD3 / SD3.5 MMDiT files: sizes read off the shapes, and every weight of a tiny file where diffusers wants it."""
from __future__ import annotations

import pytest
import torch

from engine.models.detect import CheckpointError
from engine.models.load import open_checkpoint
from engine.models.sd3 import SD3Model, detect_sd3, find_prefix, load_sd3, sd3_config
from tests.fixtures.flux import flux_shapes
from tests.fixtures.sd3 import SD3_MEDIUM, SD35_LARGE, SD35_MEDIUM, SD3Layout, sd3_shapes, write_sd3


@pytest.mark.parametrize("layout, expected", [
    (SD3_MEDIUM, dict(hidden=1536, num_layers=24, pos_embed_max_size=192, dual_attention_layers=(), qk_norm=False)),
    (SD35_LARGE, dict(hidden=2432, num_layers=38, pos_embed_max_size=192, dual_attention_layers=(), qk_norm=True)),
    (SD35_MEDIUM, dict(hidden=1536, num_layers=24, pos_embed_max_size=384, dual_attention_layers=tuple(range(13)),
                       qk_norm=True)),
])
def test_published_sizes(layout, expected):
    spec = detect_sd3(sd3_shapes(layout), "sd3.safetensors")
    assert {k: getattr(spec, k) for k in expected} == expected
    assert (spec.context_dim, spec.pooled_dim, spec.in_channels, spec.out_channels, spec.patch) == (4096, 2048, 16, 16, 2)
    config = sd3_config(spec)
    assert config["num_attention_heads"] == spec.hidden // 64 and config["caption_projection_dim"] == spec.hidden


def test_other_files_are_not_sd3():
    assert find_prefix(flux_shapes()) is None
    with pytest.raises(CheckpointError, match="SD3"):
        detect_sd3(flux_shapes(), "flux.safetensors")


@pytest.mark.parametrize("layout", [SD3Layout(), SD3Layout(dual_attention_layers=(0,), qk_norm=True)])
def test_tiny_file_loads_with_its_weights_in_place(tmp_path, layout):
    path = write_sd3(tmp_path / "sd3.safetensors", seed=4, layout=layout, prefix="")
    with open_checkpoint(path, torch.device("cpu")) as file:
        spec, transformer = load_sd3(file, torch.device("cpu"), torch.float32)
        qkv = file.read("joint_blocks.0.context_block.attn.qkv.weight").float()
        grid = file.read("pos_embed").float()
    attention = transformer.transformer_blocks[0].attn
    assert torch.equal(torch.cat([attention.add_q_proj.weight, attention.add_k_proj.weight,
                                  attention.add_v_proj.weight]), qkv)
    assert torch.equal(transformer.pos_embed.pos_embed, grid)
    assert transformer.transformer_blocks[-1].context_pre_only
    assert (transformer.transformer_blocks[0].attn2 is not None) == bool(layout.dual_attention_layers)


def test_model_pads_narrow_conditioning_and_odd_sizes(tmp_path):
    path = write_sd3(tmp_path / "sd3.safetensors")
    with open_checkpoint(path, torch.device("cpu")) as file:
        model = SD3Model(load_sd3(file, torch.device("cpu"), torch.float32)[1])
    conds = model.extra_conds(torch.randn(1, 5, 20), {"pooled_output": torch.randn(1, 80)}, torch.zeros(1, 16, 8, 8))
    width = SD3Layout().context_dim
    assert conds["c_crossattn"].shape == (1, 5, width) and torch.all(conds["c_crossattn"][..., 20:] == 0)
    x = torch.randn(1, 16, 7, 9)
    denoised = model.apply_model(x, torch.tensor([0.5]), **conds)
    assert denoised.shape == x.shape and torch.isfinite(denoised).all()
    with pytest.raises(ValueError, match="TripleCLIPLoader"):
        model.extra_conds(torch.randn(1, 5, width + 1), {}, torch.zeros(1, 16, 8, 8))
