"""LATENT_OPERATION nodes: declarations, the operations, and how they are applied to a LATENT and to the guidance
(the parity goldens latent_* and guidance_* compare whole images with upstream's)."""
from __future__ import annotations

import pytest
import torch

from engine.models.diffusion import DiffusionModel
from nodes import latent_operations as ops
from tests.nodes.test_latent_nodes import assert_matches_capture


@pytest.mark.parametrize("name", sorted(ops.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(ops, name)


def latent(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_tonemapping_keeps_directions_and_compresses_lengths():
    x = latent()
    (operation,) = ops.LatentOperationTonemapReinhard().op(0.5)
    out = operation(latent=x)
    before, after = x.norm(dim=1), out.norm(dim=1)
    torch.testing.assert_close(out / after[:, None], x / before[:, None])
    assert (after < before).all()
    for a, b in zip(after, before):  # each sample's lengths keep their order
        assert torch.argsort(a.flatten()).equal(torch.argsort(b.flatten()))


def test_sharpening_leaves_a_flat_latent_and_alpha_0_changes_nothing():
    x = latent()
    (operation,) = ops.LatentOperationSharpen().op(2, 1.0, 0.5)
    flat = torch.ones(1, 4, 6, 6) * torch.tensor([0.3, -1.0, 2.0, 0.5]).view(1, 4, 1, 1)
    torch.testing.assert_close(operation(latent=flat), flat)
    assert not torch.allclose(operation(latent=x), x, atol=1e-3)
    (unchanged,) = ops.LatentOperationSharpen().op(3, 1.0, 0.0)
    torch.testing.assert_close(unchanged(latent=x), x)


def test_apply_operation_replaces_only_the_samples():
    samples = {"samples": latent(), "batch_index": [3, 4], "noise_mask": torch.ones(1, 8, 8)}
    (out,) = ops.LatentApplyOperation().apply(samples, lambda latent, **kwargs: latent * 2)
    assert torch.equal(out["samples"], samples["samples"] * 2)
    assert out["batch_index"] == [3, 4] and out["noise_mask"] is samples["noise_mask"]


def test_apply_operation_cfg_acts_on_the_guidance_direction():
    model = DiffusionModel(torch.nn.Identity(), "sd1", "eps", 0.18215)
    (patched,) = ops.LatentApplyOperationCFG().patch(model, lambda latent, **kwargs: latent * 3)
    [pre_cfg] = patched.model_options["sampler_pre_cfg_function"]
    cond, uncond = latent(1), latent(2)
    out = pre_cfg({"conds_out": [cond, uncond]})
    torch.testing.assert_close(out[0], uncond + (cond - uncond) * 3)
    assert out[1] is uncond
    assert torch.equal(pre_cfg({"conds_out": [cond, uncond, uncond]})[0], cond * 3)  # other guiders: cond alone
    assert "sampler_pre_cfg_function" not in model.model_options
