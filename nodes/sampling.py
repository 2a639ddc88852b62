"""KSampler and KSamplerAdvanced: denoise a latent with a model and positive/negative conditioning.

Both run `nodes.common_ksampler`, which goes through `comfy.sample.sample`, `comfy.samplers.KSampler` and
`latent_preview`, looked up at each call: custom node packs that rebind those (as packs written for ComfyUI do at
import) change what these nodes do, as in ComfyUI."""
from __future__ import annotations

import nodes
from engine.sampling.samplers import SAMPLER_NAMES
from engine.sampling.schedules import SCHEDULER_NAMES

SEED_MAX = 0xFFFFFFFFFFFFFFFF


class KSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                             "tooltip": "The random seed used for creating the noise."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                              "tooltip": "The number of steps used in the denoising process."}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                              "tooltip": "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values result in images more closely matching the prompt however too high values will negatively impact quality."}),
            "sampler_name": (SAMPLER_NAMES, {"tooltip": "The algorithm used when sampling, this can affect the quality, speed, and style of the generated output."}),
            "scheduler": (SCHEDULER_NAMES, {"tooltip": "The scheduler controls how noise is gradually removed to form the image."}),
            "positive": ("CONDITIONING", {"tooltip": "The conditioning describing the attributes you want to include in the image."}),
            "negative": ("CONDITIONING", {"tooltip": "The conditioning describing the attributes you want to exclude from the image."}),
            "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "The amount of denoising applied, lower values will maintain the structure of the initial image allowing for image to image sampling."}),
        }}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"
    CATEGORY = "sampling"
    DESCRIPTION = "Uses the provided model, positive and negative conditioning to denoise the latent image."

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0):
        return nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                     latent_image, denoise=denoise)


class KSamplerAdvanced:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "add_noise": (["enable", "disable"],),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (SAMPLER_NAMES,),
            "scheduler": (SCHEDULER_NAMES,),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "return_with_leftover_noise": (["disable", "enable"],),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "sampling"

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, denoise=1.0):
        return nodes.common_ksampler(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                     latent_image, denoise=denoise, disable_noise=add_noise == "disable",
                                     start_step=start_at_step, last_step=end_at_step,
                                     force_full_denoise=return_with_leftover_noise != "enable")


NODE_CLASS_MAPPINGS = {"KSampler": KSampler, "KSamplerAdvanced": KSamplerAdvanced}
NODE_DISPLAY_NAME_MAPPINGS = {"KSampler": "KSampler", "KSamplerAdvanced": "KSampler (Advanced)"}
