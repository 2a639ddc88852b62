"""ComfyUI's UNet patch points on the diffusers UNet, named and shaped as in the original UNet."""
from __future__ import annotations

import pytest
import torch

from engine.models import unet_patches
from engine.models.diffusion import DiffusionModel
from engine.models.load import load_checkpoint
from tests.fixtures import checkpoints as ck


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> DiffusionModel:
    """The tiny SD1 UNet: levels of 32 and 64 channels, one res block each, a transformer on the first level's
    blocks on both sides, and a middle block with one."""
    path = ck.write_sd15(tmp_path_factory.mktemp("sd1") / "sd1.safetensors")
    loaded = load_checkpoint(path, "cpu", torch.float32, load_clip=False, load_vae=False)
    return DiffusionModel(loaded.unet, "sd1", "eps", loaded.latent_scale_factor)


def run(model: DiffusionModel, options: dict | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    transformer_options = {**(options or {}), "cond_or_uncond": [0, 1], "sigmas": torch.full((2,), 3.0)}
    return model.apply_model(x, torch.full((2,), 3.0), c_crossattn=context, transformer_options=transformer_options)


def test_block_patches_see_the_original_unets_blocks_in_order(model):
    seen = []

    def input_patch(h, options):
        seen.append(("input", options["block"], tuple(h.shape)))
        return h

    def output_patch(h, hsp, options):
        seen.append(("output", options["block"], h.shape[1], hsp.shape[1]))
        return h, hsp

    plain = run(model)
    patched = run(model, {"patches": {"input_block_patch": [input_patch], "output_block_patch": [output_patch]}})
    assert torch.equal(plain, patched)  # patches that change nothing change nothing
    assert seen == [
        ("input", ("input", 0), (2, 32, 8, 8)), ("input", ("input", 1), (2, 32, 8, 8)),
        ("input", ("input", 2), (2, 32, 4, 4)), ("input", ("input", 3), (2, 64, 4, 4)),
        # each output block joins h with the skip of the input blocks in reverse order
        ("output", ("output", 0), 64, 64), ("output", ("output", 1), 64, 32),
        ("output", ("output", 2), 64, 32), ("output", ("output", 3), 32, 32)]


def test_a_block_patch_changes_what_runs_after_it(model):
    doubled = run(model, {"patches": {"output_block_patch": [lambda h, hsp, options: (h, hsp * 2)]}})
    assert not torch.allclose(doubled, run(model))


def test_after_skip_patches_change_only_what_goes_on_and_upsamplers_aim_at_the_next_skip(model):
    seen = []

    def halve(h, options):
        return h[..., ::2, ::2] if options["block"] == ("input", 1) else h

    def output_patch(h, hsp, options):
        seen.append((options["block"][1], tuple(h.shape[2:]), tuple(hsp.shape[2:])))
        return h, hsp

    out = run(model, {"patches": {"input_block_patch_after_skip": [halve], "output_block_patch": [output_patch]}})
    assert out.shape == (2, 4, 8, 8)
    # the skip of input block 1 was kept at 8 x 8 before h was halved: what follows runs at half the size, and the
    # upsampler after output block 1 enlarges 2 x 2 straight to the 8 x 8 of that skip
    assert seen == [(0, (2, 2), (2, 2)), (1, (2, 2), (2, 2)), (2, (8, 8), (8, 8)), (3, (8, 8), (8, 8))]

    def regrow(h, hsp, options):
        output_patch(h, hsp, options)
        return torch.nn.functional.interpolate(h, size=hsp.shape[2:]), hsp

    # halved before its skip is kept: output block 3 alone meets a skip of another size, and must make h fit
    before = run(model, {"patches": {"input_block_patch": [halve], "output_block_patch": [regrow]}})
    assert seen[4:] == [(0, (2, 2), (2, 2)), (1, (2, 2), (2, 2)), (2, (4, 4), (4, 4)), (3, (4, 4), (8, 8))]
    assert before.shape == out.shape and not torch.equal(before, out)


def test_attention_patches_get_upstreams_extra_options(model):
    calls = []

    def attn1(n, context, value, extra):
        calls.append(("attn1", extra["block"], extra["block_index"], extra["transformer_index"], extra["n_heads"],
                      extra["dim_head"], extra["activations_shape"], extra["original_shape"], extra["cond_or_uncond"]))
        assert context is n and value is n  # self-attention: n attends to itself
        return n, context, value

    def attn2(n, context, value, extra):
        calls.append(("attn2", extra["block"]))
        assert context.shape == (2, 77, 32) and value is context
        return n, context, value

    patched = run(model, {"patches": {"attn1_patch": [attn1], "attn2_patch": [attn2]}})
    torch.testing.assert_close(patched, run(model), rtol=1e-4, atol=1e-5)  # the same attention, computed again
    assert [c[:4] for c in calls if c[0] == "attn1"] == [
        ("attn1", ("input", 1), 0, 0), ("attn1", ("middle", 0), 0, 1), ("attn1", ("output", 2), 0, 2),
        ("attn1", ("output", 3), 0, 3)]
    first = calls[0]
    assert (first[4], first[5]) == (8, 4)  # SD1 UNets have 8 heads; 32 channels here
    assert first[6] == [2, 32, 8, 8] and first[7] == [2, 4, 8, 8] and first[8] == [0, 1]
    assert [c[1] for c in calls if c[0] == "attn2"] == [("input", 1), ("middle", 0), ("output", 2), ("output", 3)]


def test_a_replacement_takes_the_projections_of_its_block_only(model):
    seen = []

    def replacement(q, k, v, extra):
        seen.append(extra["block"])
        return unet_patches.attention(q, k, v, extra["n_heads"])

    options = unet_patches.with_replacement({"transformer_options": {}}, replacement, "attn1", "middle", 0)
    same = run(model, options["transformer_options"])
    torch.testing.assert_close(same, run(model), rtol=1e-4, atol=1e-5)
    assert seen == [("middle", 0)]
    identity = unet_patches.with_replacement({}, lambda q, k, v, extra: v, "attn1", "output", 2, 0)
    assert not torch.allclose(run(model, identity["transformer_options"]), run(model))


def test_the_unet_is_left_as_it_was(model):
    processors = {name: type(p) for name, p in model.unet.attn_processors.items()}
    run(model, {"patches": {"attn1_patch": [lambda *args: args[:3]],
                            "output_block_patch": [lambda h, hsp, options: (h, hsp)]}})
    assert {name: type(p) for name, p in model.unet.attn_processors.items()} == processors
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.unet.modules())
    assert not any("forward" in vars(block) for block in model.unet.up_blocks)  # their own forward again


def test_model_patch_setters_build_upstreams_option_layout():
    model = DiffusionModel(torch.nn.Identity(), "sd1", "eps", 0.18215)
    clone = model.clone()
    first, second = (lambda h, hsp, o: (h, hsp)), (lambda n, c, v, e: (n, c, v))
    clone.set_model_output_block_patch(first)
    clone.set_model_attn1_patch(second)
    clone.set_model_attn2_replace(first, "input", 4, 1)
    options = clone.model_options["transformer_options"]
    assert options["patches"] == {"output_block_patch": [first], "attn1_patch": [second]}
    assert options["patches_replace"] == {"attn2": {("input", 4, 1): first}}
    assert model.model_options == {"transformer_options": {}}
