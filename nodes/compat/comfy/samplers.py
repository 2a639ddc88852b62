"""`comfy.samplers`: the sampler and scheduler names custom nodes offer in their own combos, and the batched model
call that guidance patches run the model with."""
from __future__ import annotations

from engine.sampling.guidance import calc_cond_batch as _calc_cond_batch
from engine.sampling.samplers import SAMPLER_NAMES
from engine.sampling.schedules import SCHEDULER_NAMES

KSAMPLER_NAMES = SAMPLER_NAMES


class KSampler:
    SAMPLERS = SAMPLER_NAMES
    SCHEDULERS = SCHEDULER_NAMES


def calc_cond_batch(model, conds, x_in, timestep, model_options=None):
    """The model's prediction for each conditioning list (as a patch function's args hand them over)."""
    return _calc_cond_batch(model, conds, x_in, timestep, model_options)
