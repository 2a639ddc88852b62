"""The model patch nodes: upstream's declarations, and what FreeU does to the blocks it acts on (their images are
compared with upstream's in tests/e2e/test_parity.py)."""
from __future__ import annotations

import pytest
import torch

from engine.models import freeu
from engine.models.weight_scale import WeightScale
from nodes import attention_multiply, guidance, unet_patches
from tests.nodes.test_latent_nodes import assert_matches_capture


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
