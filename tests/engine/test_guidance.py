"""Classifier-free guidance over conditioning lists, with a model whose predictions are known exactly."""
from __future__ import annotations

import torch

from engine.sampling.guidance import CFGDenoiser, add_opposite_areas, prepare
from engine.sampling.model_sampling import discrete_model_sampling


class ConstantModel:
    """Predicts, everywhere, the first number of the cross-attention tensor it is given; records batch sizes."""

    def __init__(self):
        self.model_sampling = discrete_model_sampling()
        self.calls = []

    def extra_conds(self, cond, options, noise, width, height, prompt_type="positive", latent_image=None,
                    denoise_mask=None, seed=0):
        return {"c_crossattn": cond}

    def apply_model(self, x, sigma, c_crossattn, transformer_options=None):
        self.calls.append(x.shape[0])
        return c_crossattn[:, 0, 0].reshape(-1, 1, 1, 1).expand_as(x).clone()


def cond(value: float, **options):
    return [torch.full((1, 77, 8), float(value)), options]


def denoiser(positive, negative, cfg, shape=(1, 4, 16, 16)):
    model = ConstantModel()
    noise = torch.zeros(shape)
    return CFGDenoiser(model, prepare(positive, model, noise), prepare(negative, model, noise), cfg), model


def test_cfg_formula_and_one_batched_call():
    d, model = denoiser([cond(3.0)], [cond(1.0)], cfg=7.5)
    out = d(torch.zeros(1, 4, 16, 16), torch.tensor([5.0]))
    assert torch.allclose(out, torch.full_like(out, 1.0 + (3.0 - 1.0) * 7.5))
    assert model.calls == [2]  # cond and uncond in one model call


def test_cfg_one_skips_the_unconditional_pass_but_cfg_pp_gets_it():
    d, model = denoiser([cond(3.0)], [cond(1.0)], cfg=1.0)
    out = d(torch.zeros(1, 4, 8, 8), torch.tensor([5.0]))
    assert torch.all(out == 3.0) and model.calls == [1]
    denoised, uncond = d.denoise_with_uncond(torch.zeros(1, 4, 8, 8), torch.tensor([5.0]))
    assert torch.all(denoised == 3.0) and torch.all(uncond == 1.0)


def test_area_conditioning_blends_with_feathered_edges():
    # A full-frame cond of 0 and an 8x8 area cond of 8 at (y=8, x=8) on a 16x16 latent.
    d, _ = denoiser([cond(0.0), cond(8.0, area=(8, 8, 8, 8), strength=1.0)], [cond(0.0)], cfg=1.0)
    out = d(torch.zeros(1, 4, 16, 16), torch.tensor([5.0]))[0, 0]
    assert torch.all(out[:8] == 0) and torch.all(out[:, :8] == 0)
    # The area's inner edges ramp over min(8, 8 // 4) = 2 rows: weights 1/2 then 1.
    assert torch.isclose(out[8, 12], torch.tensor(8.0 * 0.5 / 1.5))
    assert torch.isclose(out[9, 12], torch.tensor(8.0 / 2.0))
    assert torch.isclose(out[12, 12], torch.tensor(4.0))


def test_percentage_area_and_mask_to_bounds():
    model = ConstantModel()
    noise = torch.zeros(1, 4, 20, 40)
    (c,) = prepare([cond(1.0, area=("percentage", 0.5, 0.25, 0.5, 0.5))], model, noise)
    assert c.area == (10, 10, 10, 20)
    mask = torch.zeros(1, 160, 320)
    mask[:, 80:, :40] = 1.0
    (m,) = prepare([cond(1.0, mask=mask, set_area_to_bounds=True)], model, noise)
    assert m.mask.shape == (1, 20, 40) and m.area == (10, 8, 10, 0)


def test_mask_weights_and_timestep_ranges():
    mask = torch.zeros(1, 16, 16)
    mask[:, :, 8:] = 1.0
    d, _ = denoiser([cond(2.0), cond(10.0, mask=mask, mask_strength=1.0)], [cond(0.0)], cfg=1.0)
    out = d(torch.zeros(1, 4, 16, 16), torch.tensor([5.0]))[0, 0]
    assert torch.all(out[:, :8] == 2.0) and torch.allclose(out[:, 8:], torch.tensor(6.0))

    # A cond limited to the first half of sampling applies at high sigma only.
    d, _ = denoiser([cond(1.0), cond(5.0, start_percent=0.0, end_percent=0.5)], [cond(0.0)], cfg=1.0)
    high = d(torch.zeros(1, 4, 8, 8), torch.tensor([14.0]))
    low = d(torch.zeros(1, 4, 8, 8), torch.tensor([0.1]))
    assert torch.allclose(high, torch.tensor(3.0)) and torch.all(low == 1.0)


def test_area_prompts_get_a_matching_negative():
    model = ConstantModel()
    noise = torch.zeros(1, 4, 16, 16)
    positive = prepare([cond(1.0), cond(2.0, area=(8, 8, 0, 0))], model, noise)
    negative = prepare([cond(-1.0)], model, noise)
    add_opposite_areas(positive, negative)
    assert len(negative) == 2 and negative[1].area == (8, 8, 0, 0)
    assert torch.all(negative[1].model_conds["c_crossattn"] == -1.0)


def test_conditioning_batch_repeats_to_the_latent_batch():
    d, model = denoiser([cond(3.0)], [cond(1.0)], cfg=2.0, shape=(3, 4, 8, 8))
    out = d(torch.zeros(3, 4, 8, 8), torch.tensor([5.0, 5.0, 5.0]))
    assert out.shape == (3, 4, 8, 8) and torch.all(out == 5.0) and model.calls == [6]
