"""ModelSamplingAuraFlow: upstream's declaration, and what it does to a MODEL."""
from __future__ import annotations

import math

from nodes import model_sampling
from tests.nodes.test_latent_nodes import assert_matches_capture


def test_declaration_matches_upstream():
    assert_matches_capture(model_sampling, "ModelSamplingAuraFlow")


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
