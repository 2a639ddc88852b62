"""`comfy.latent_formats`: how each model family scales its latents (process_in before sampling, process_out
after), for the families comfyd runs; packs pick one by class to scale latents themselves, or to build previewers
(`latent_rgb_factors`, `taesd_decoder_name`: comfyd's own preview tables)."""
from __future__ import annotations

from engine.models.taesd import SPACES
from engine.sampling.preview import LATENT_RGB


class LatentFormat:
    scale_factor = 1.0
    shift_factor = 0.0
    latent_channels = 4
    latent_dimensions = 2
    latent_rgb_factors = None
    latent_rgb_factors_bias = None
    taesd_decoder_name = None

    def process_in(self, latent):
        return (latent - self.shift_factor) * self.scale_factor

    def process_out(self, latent):
        return latent / self.scale_factor + self.shift_factor


class SD15(LatentFormat):
    latent_rgb_factors, latent_rgb_factors_bias = LATENT_RGB["sd"]
    taesd_decoder_name = f"{SPACES['sd']}_decoder"

    def __init__(self, scale_factor: float = 0.18215):
        self.scale_factor = scale_factor


class SDXL(LatentFormat):
    scale_factor = 0.13025
    latent_rgb_factors, latent_rgb_factors_bias = LATENT_RGB["sdxl"]
    taesd_decoder_name = f"{SPACES['sdxl']}_decoder"


class SD_X4(LatentFormat):
    scale_factor = 0.08333


class SD3(LatentFormat):
    scale_factor = 1.5305
    shift_factor = 0.0609
    latent_channels = 16
    latent_rgb_factors, latent_rgb_factors_bias = LATENT_RGB["sd3"]
    taesd_decoder_name = f"{SPACES['sd3']}_decoder"


class Flux(SD3):
    scale_factor = 0.3611
    shift_factor = 0.1159
    latent_rgb_factors, latent_rgb_factors_bias = LATENT_RGB["flux"]
    taesd_decoder_name = f"{SPACES['flux']}_decoder"
