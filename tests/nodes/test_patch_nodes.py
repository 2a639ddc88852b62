"""The model patch nodes: upstream's declarations, and what FreeU does to the blocks it acts on (their images are
compared with upstream's in tests/e2e/test_parity.py)."""
from __future__ import annotations

import pytest
import torch

from engine.models import freeu
from engine.models.diffusion import DiffusionModel
from engine.models.hypertile import HyperTile as HyperTiling
from engine.models.token_merging import TokenMerging
from engine.models.weight_scale import WeightScale
from nodes import attention_multiply, guidance, unet_patches
from engine.models.load import load_checkpoint
from tests.engine.models import test_unet_patches
from tests.fixtures import checkpoints as ck
from tests.nodes.test_latent_nodes import assert_matches_capture


@pytest.fixture(scope="module")
def unet_model(tmp_path_factory) -> DiffusionModel:
    """The tiny SD1 UNet of tests/engine/models/test_unet_patches.py."""
    loaded = load_checkpoint(ck.write_sd15(tmp_path_factory.mktemp("sd1") / "sd1.safetensors"), "cpu", torch.float32,
                             load_clip=False, load_vae=False)
    return DiffusionModel(loaded.unet, "sd1", "eps", loaded.latent_scale_factor)


def run_unet(model: DiffusionModel) -> torch.Tensor:
    """One UNet call at sigma 3 with the model's UNet patches."""
    return test_unet_patches.run(model, model.model_options.get("transformer_options"))


@pytest.mark.parametrize("module, name", [(m, n) for m in (guidance, unet_patches, attention_multiply)
                                          for n in m.NODE_CLASS_MAPPINGS])
def test_declaration_matches_upstream(module, name):
    assert_matches_capture(module, name)


def test_fourier_filter_scales_only_the_lowest_frequencies():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(freeu.fourier_filter(x, 1, 1.0), x, rtol=0, atol=1e-5)
    constant = torch.ones(1, 1, 8, 8)  # all its energy is at frequency zero
    torch.testing.assert_close(freeu.fourier_filter(constant, 1, 0.5), constant * 0.5)


@pytest.mark.parametrize("structure_aware", [False, True])
def test_freeu_acts_on_4x_and_2x_the_base_width_only(structure_aware):
    patch = freeu.output_block_patch(32, b1=2.0, b2=3.0, s1=1.0, s2=1.0, structure_aware=structure_aware)
    h = torch.rand(1, 128, 4, 4) + 0.5
    out, _ = patch(h.clone(), torch.rand(1, 128, 4, 4), {})
    assert torch.equal(out[:, 64:], h[:, 64:]) and torch.all(out[:, :64] >= h[:, :64])
    assert torch.any(out[:, :64] > h[:, :64])  # v2 leaves the least active pixel alone
    if not structure_aware:
        torch.testing.assert_close(out[:, :64], h[:, :64] * 2.0)
    other = torch.rand(1, 96, 4, 4)
    assert torch.equal(patch(other, other, {})[0], other)


def test_attention_multiply_scales_the_chosen_projections_of_a_clone():
    class Owner:
        def __init__(self, patches=()):
            self.patches = list(patches)

        def clone(self):
            return Owner(self.patches)

    model = Owner()
    (patched,) = attention_multiply.UNetCrossAttentionMultiply().patch(model, q=2.0, k=1.0, v=1.0, out=0.5)
    assert model.patches == [] and [strength for _, strength in patched.patches] == [1.0, 1.0]  # k and v are 1
    params = {"down.0.attn2.to_q.weight": torch.ones(2, 2), "down.0.attn2.to_q.bias": torch.ones(2),
              "down.0.attn1.to_q.weight": torch.ones(2, 2), "down.0.attn2.to_out.0.weight": torch.ones(2, 2)}
    deltas = {}
    for patch, _ in patched.patches:
        deltas.update(patch.deltas("unet", params))
    assert sorted(deltas) == ["down.0.attn2.to_out.0.weight", "down.0.attn2.to_q.bias", "down.0.attn2.to_q.weight"]
    assert torch.all(deltas["down.0.attn2.to_q.weight"] == 1.0)
    assert torch.all(deltas["down.0.attn2.to_out.0.weight"] == -0.5)
    assert not WeightScale(("to_q.weight",), 3.0).deltas("clip_l", {"self_attn.q_proj.weight": torch.ones(1)})


def test_renorm_cfg_guides_below_the_truncation_sigma_and_caps_the_norm():
    model = DiffusionModel(torch.nn.Identity(), "sd1", "eps", 0.18215)
    (patched,) = guidance.RenormCFG().patch(model, cfg_trunc=5.0, renorm_cfg=1.5)
    renormed = patched.model_options["sampler_cfg_function"]
    x, cond, uncond = torch.zeros(2, 4, 3, 3), torch.ones(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)
    cond[1] *= 0.1  # the second sample's guided result is ten times its positive prediction: capped at 1.5 times

    def guided(sigma, scale=10.0):
        return x - renormed({"cond_denoised": cond, "uncond_denoised": uncond, "cond_scale": scale,
                             "timestep": torch.full((2,), sigma), "input": x})

    torch.testing.assert_close(guided(6.0), cond)  # above cfg_trunc: the positive prediction alone
    torch.testing.assert_close(guided(4.0), cond * 1.5)
    torch.testing.assert_close(guided(4.0, scale=1.2), cond * 1.2)  # under the cap
    (unlimited,) = guidance.RenormCFG().patch(model, cfg_trunc=100.0, renorm_cfg=0.0)
    args = {"cond_denoised": cond, "uncond_denoised": uncond, "cond_scale": 10.0, "timestep": torch.full((2,), 4.0),
            "input": x}
    torch.testing.assert_close(x - unlimited.model_options["sampler_cfg_function"](args), cond * 10)


def test_deep_shrink_shrinks_between_its_sigmas_and_regrows_at_the_skips(unet_model):
    plain = run_unet(unet_model)
    for after_skip in (True, False):
        (shrunk,) = unet_patches.PatchModelAddDownscale().patch(unet_model, 1, 2.0, 0.0, 1.0, after_skip, "bicubic",
                                                                "bislerp")
        out = run_unet(shrunk)
        assert out.shape == plain.shape and not torch.allclose(out, plain)
    (elsewhere,) = unet_patches.PatchModelAddDownscale().patch(unet_model, 1, 2.0, 0.0, 0.1, True, "bicubic",
                                                               "bicubic")
    torch.testing.assert_close(run_unet(elsewhere), plain)  # 3 is below the sigma at 10%


def test_hypertile_tiles_queries_of_the_finest_level_and_puts_them_back():
    tiling = HyperTiling(tile_size=32, swap_size=1, max_depth=0, scale_depth=False)
    q = torch.randn(2, 8 * 16, 5)
    extra = {"original_shape": [2, 4, 8, 16]}
    tiled, k, v = tiling.tile(q, "k", "v", extra)
    # 4 x 2 tiles of 4 x 4 tokens: ComfyUI takes the latent's sides swapped, 16 down and 8 across the 128 tokens
    assert tiled.shape == (2 * 8, 16, 5) and (k, v) == ("k", "v")
    assert torch.equal(tiled[0], q[0].reshape(4, 4, 2, 4, 5)[0, :, 0].reshape(16, 5))
    assert torch.equal(tiling.untile(tiled, extra), q) and tiling.tiling is None
    coarse = torch.randn(2, 32, 5)  # a level below the finest: left alone unless max_depth reaches it
    assert tiling.tile(coarse, None, None, extra)[0] is coarse


def test_tome_merges_the_ratio_of_tokens_at_the_finest_level_only():
    merging = TokenMerging(0.5)
    x = torch.randn(2, 64, 6, generator=torch.Generator().manual_seed(0))
    extra = {"original_shape": [2, 4, 8, 8]}
    torch.manual_seed(3)
    merged, _, _ = merging.merge(x, None, None, extra)
    assert merged.shape == (2, 32, 6)  # half of the 64 tokens merged into the 16 destinations or kept
    restored = merging.restore(merged, extra)
    assert restored.shape == x.shape
    unchanged = (restored == x).all(dim=-1).sum(dim=-1)
    assert (unchanged >= 64 - 32 - 16).all()  # the sources left alone, and destinations nothing merged into
    torch.manual_seed(3)
    assert torch.equal(merging.merge(x, None, None, extra)[0], merged)  # the same draw, the same merge
    coarse = torch.randn(2, 16, 6)
    assert merging.merge(coarse, None, None, extra)[0] is coarse
    assert merging.restore(coarse, extra) is coarse
