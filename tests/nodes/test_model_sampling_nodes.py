"""The ModelSampling nodes: upstream's declarations, and what the flow ones do to a MODEL (the others are checked
against upstream's images in tests/e2e/test_parity.py)."""
from __future__ import annotations

import math

import pytest

from nodes import model_sampling
from tests.nodes.test_latent_nodes import assert_matches_capture


@pytest.mark.parametrize("name", sorted(model_sampling.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(model_sampling, name)


def test_patch_gives_a_clone_with_shifted_flow_sampling():
    class Model:
        model_sampling = "original"

        def clone(self):
            other = Model()
            other.model_sampling = self.model_sampling
            return other

    original = Model()
    (patched,) = model_sampling.ModelSamplingAuraFlow().patch_aura(original, shift=2.0)
    assert original.model_sampling == "original" and patched is not original
    ms = patched.model_sampling
    assert ms.prediction == "flow" and float(ms.timestep(ms.sigma_max)) == 1.0
    assert math.isclose(float(ms.sigmas[499]), 2.0 * 0.5 / (1 + 0.5), rel_tol=1e-6)


def test_flux_patch_sets_the_exponential_shift_from_the_size():
    class Model:
        model_sampling = "original"

        def clone(self):
            return Model()

    (patched,) = model_sampling.ModelSamplingFlux().patch(Model(), 1.15, 0.5, 512, 512)
    ms = patched.model_sampling
    mu = 0.5 + 0.65 * (512 * 512 / 256 - 256) / 3840
    assert math.isclose(ms.shift, mu) and len(ms.sigmas) == 10000
    assert math.isclose(ms.percent_to_sigma(0.5), math.exp(mu) / (math.exp(mu) + 1))
