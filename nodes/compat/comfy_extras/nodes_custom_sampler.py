"""`comfy_extras.nodes_custom_sampler`: its built-in node classes (see comfy_extras) and the NOISE classes that
packs make values of."""
from __future__ import annotations

from engine.sampling.run import Noise

from . import exports

__getattr__ = exports(__name__)


class Noise_RandomNoise(Noise):  # noqa: N801 - ComfyUI's class name
    """NOISE from a seed (RandomNoise's value), with ComfyUI's `generate_noise(latent)` beside comfyd's method."""

    def generate_noise(self, input_latent: dict):
        return self.generate(input_latent, input_latent["samples"])


class Noise_EmptyNoise(Noise_RandomNoise):  # noqa: N801 - ComfyUI's class name
    """No noise (DisableNoise's value)."""

    def __init__(self):
        super().__init__(0, enabled=False)
