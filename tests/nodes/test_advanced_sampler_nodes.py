"""SamplerLCMUpscale, SamplerEulerCFG++ and GITSScheduler: declarations, the samplers on the toy problem of
tests/engine/sampling against numbers upstream's own functions gave, and the GITS schedules (the parity goldens
sampler_lcm_upscale*, sampler_euler_cfg_pp_* and gits_scheduler* compare whole images with upstream's)."""
from __future__ import annotations

import pytest
import torch

from engine.sampling import ksampler
from engine.sampling.gits import NOISE_LEVELS
from engine.sampling.run import Sampler
from engine.sampling.samplers import NODE_SAMPLERS, SAMPLER_NAMES
from engine.sampling.schedules import get_sigmas_karras
from nodes import advanced_samplers as nodes
from tests.engine.sampling.toys import Gaussian, Guided
from tests.nodes.test_latent_nodes import assert_matches_capture

# upstream's sample_euler_pp / sample_lcm_upscale (total_upscale 2, bislerp, torch.manual_seed(7) before) on
# toy_problem(), with a model that hands its uncond prediction to the post-cfg function as ComfyUI's does
UPSTREAM_EULER_PP = [1.024838, 1.013676, 1.002513, 0.99135, 0.980187, 0.969025, 0.957861, 0.9467, 0.935536,
                     0.924373, 0.913211, 0.902049]
UPSTREAM_LCM_UPSCALE = [
    0.66877, 0.86534, 1.00977, 0.94382, 0.78728, 0.81271, 0.91977, 0.71979, 0.82346, 0.96091, 0.89599, 1.19295,
    0.93673, 0.99685, 0.79193, 0.94709, 0.98763, 0.91498, 0.94835, 0.93586, 1.06461, 0.98855, 0.94474, 1.08666,
    0.87421, 1.03295, 1.01273, 0.87199, 1.23293, 0.89686, 0.88527, 0.89786, 0.94706, 0.82816, 1.02962, 0.85465,
    0.89318, 0.95453, 1.04287, 0.8879, 1.05632, 0.87378, 1.13933, 1.06575, 0.69175, 0.99374, 0.87919, 0.97553]


@pytest.mark.parametrize("name", sorted(nodes.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(nodes, name)


def toy_problem():
    sigmas = get_sigmas_karras(6, 0.0291675, 14.614642)
    x = (torch.arange(12, dtype=torch.float32).reshape(2, 1, 2, 3) - 5.5) / 3 * sigmas[0]
    return Guided(Gaussian(0.5, 0.3), Gaussian(-0.2, 0.5), 3.0), x, sigmas


def test_the_node_samplers_are_not_ksampler_choices_but_run_by_name():
    assert not set(NODE_SAMPLERS) & set(SAMPLER_NAMES)
    model, x, sigmas = toy_problem()
    out = ksampler.sample("euler_pp", model, torch.zeros_like(x), x, sigmas, seed=0)
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="unknown sampler"):
        ksampler.sample("no_such_sampler", model, x, x, sigmas)


def test_sampler_nodes_pick_their_samplers():
    assert nodes.SamplerEulerCFGpp().get_sampler("regular") == (Sampler("euler_cfg_pp"),)
    assert nodes.SamplerEulerCFGpp().get_sampler("alternative") == (Sampler("euler_pp"),)
    assert nodes.SamplerLCMUpscale().get_sampler(1.5, -1, "bilinear") == (Sampler("lcm_upscale", {
        "total_upscale": 1.5, "upscale_method": "bilinear", "upscale_steps": None}),)
    assert nodes.SamplerLCMUpscale().get_sampler(2.0, 3, "bislerp")[0].options["upscale_steps"] == 3


def test_euler_cfg_pp_alternative_matches_upstream():
    model, x, sigmas = toy_problem()
    out = NODE_SAMPLERS["euler_pp"](model, x, sigmas)
    torch.testing.assert_close(out.flatten(), torch.tensor(UPSTREAM_EULER_PP), rtol=1e-5, atol=1e-5)


def test_lcm_upscale_matches_upstream_from_the_same_global_generator_state():
    guided, x, sigmas = toy_problem()
    torch.manual_seed(7)
    out = NODE_SAMPLERS["lcm_upscale"](lambda x, sigma, **extra: guided.denoise_with_uncond(x, sigma)[0], x, sigmas,
                                       total_upscale=2.0, upscale_method="bislerp")
    assert out.shape == (2, 1, 4, 6)  # 6 steps: the first 3 enlarge by 4/3, 5/3 and 2
    torch.testing.assert_close(out.flatten(), torch.tensor(UPSTREAM_LCM_UPSCALE), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps, sizes", [
    (None, [(2, 3), (3, 4), (3, 5), (4, 6), (4, 6), (4, 6)]),  # about half of the steps: 3 of 6
    (1, [(2, 3)] + [(4, 6)] * 5), (0, [(2, 3)] * 6),
    (100, [(2, 3), (2, 3), (3, 4), (3, 4), (3, 5), (3, 5)])])  # as many as there are sigmas: 7 scale steps
def test_lcm_upscale_steps(steps, sizes):
    _, x, sigmas = toy_problem()
    seen = []
    NODE_SAMPLERS["lcm_upscale"](lambda x, sigma, **extra: seen.append(tuple(x.shape[2:])) or x * 0, x, sigmas,
                                 total_upscale=2.0, upscale_method="nearest-exact", upscale_steps=steps)
    assert seen == sizes


def test_gits_schedules():
    (sigmas,) = nodes.GITSScheduler().get_sigmas(1.2, 4, 1.0)
    assert sigmas.tolist() == torch.tensor(NOISE_LEVELS[1.2][2][:-1] + [0.0]).tolist()
    (resampled,) = nodes.GITSScheduler().get_sigmas(0.85, 25, 1.0)
    assert len(resampled) == 26 and resampled[0].item() == pytest.approx(14.61464119) and resampled[-1] == 0
    assert (resampled[:-1].diff() < 0).all()
    (tail,) = nodes.GITSScheduler().get_sigmas(0.85, 25, 0.16)
    assert tail.tolist() == resampled[-5:].tolist()[:-1] + [0.0]
    assert nodes.GITSScheduler().get_sigmas(1.2, 10, 0.0)[0].numel() == 0
    assert nodes.GITSScheduler().get_sigmas(1.2000001, 2, 1.0)[0].tolist() == \
        torch.tensor(NOISE_LEVELS[1.2][0][:-1] + [0.0]).tolist()
