"""Custom sampling nodes (samplers, schedulers, sigma tools, noise, guiders): upstream's declarations, and the
sigma arithmetic the golden images (tests/e2e/test_parity.py) do not pin down exactly."""
from __future__ import annotations

import pytest
import torch

from engine.sampling import schedules
from nodes import custom_sampling
from tests.nodes.test_latent_nodes import assert_matches_capture


@pytest.mark.parametrize("name", sorted(custom_sampling.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(custom_sampling, name)


def test_split_sigmas_denoise_shares_the_boundary_sigma():
    sigmas = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.0])
    high, low = custom_sampling.SplitSigmasDenoise().get_sigmas(sigmas, 0.5)
    assert high.tolist() == [8.0, 4.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]


def test_extend_intermediate_sigmas_fills_only_the_chosen_range():
    sigmas = torch.tensor([8.0, 4.0, 2.0, 0.0])
    (out,) = custom_sampling.ExtendIntermediateSigmas().extend(sigmas, 2, 5.0, 2.0, "linear")
    assert out.tolist() == [8.0, 4.0, 3.0, 2.0, 1.0, 0.0]


@pytest.mark.parametrize("schedule, args", [(schedules.get_sigmas_polyexponential, (5, 0.03, 14.6, 2.0)),
                                            (schedules.get_sigmas_vp, (5,))])
def test_k_diffusion_schedules_descend_to_zero(schedule, args):
    sigmas = schedule(*args)
    assert len(sigmas) == 6 and sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())


def test_the_laplace_schedule_stays_in_range_and_has_no_final_zero():
    sigmas = schedules.get_sigmas_laplace(6, 0.03, 14.6)
    assert len(sigmas) == 6 and sigmas[-1] > 0
    assert torch.allclose(sigmas[[0, -1]], torch.tensor([14.6, 0.03]))  # clamped to the range at both ends


def test_tabulated_schedules_keep_their_table_at_its_own_length():
    (sigmas,) = custom_sampling.OptimalStepsScheduler().get_sigmas("FLUX", 10, 1.0)
    assert torch.allclose(sigmas, torch.tensor(schedules.NOISE_LEVELS["FLUX"][:-1] + [0.0]))
    (resampled,) = custom_sampling.OptimalStepsScheduler().get_sigmas("Wan", 4, 1.0)
    assert len(resampled) == 5 and resampled[0] == 1.0 and resampled[-1] == 0
    assert custom_sampling.AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.0)[0].numel() == 0
