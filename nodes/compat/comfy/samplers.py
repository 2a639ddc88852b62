"""`comfy.samplers`: the sampler and scheduler names custom nodes offer in their own combos."""
from __future__ import annotations

from engine.sampling.samplers import SAMPLER_NAMES
from engine.sampling.schedules import SCHEDULER_NAMES

KSAMPLER_NAMES = SAMPLER_NAMES


class KSampler:
    SAMPLERS = SAMPLER_NAMES
    SCHEDULERS = SCHEDULER_NAMES
