"""MODEL: a diffusers UNet behind ComfyUI's `apply_model` contract (sigma in, denoised x0 out)."""
from __future__ import annotations

import contextlib
import copy
import inspect
import math

import torch

from ..resize import common_upscale
from ..sampling.guidance import with_sampler_function
from ..sampling.model_sampling import ModelSampling, discrete_model_sampling
from . import unclip, unet_patches
from .cast import compute_dtype

# Default aesthetic scores of the SDXL refiner's conditioning, as ComfyUI uses them.
REFINER_POSITIVE_SCORE = 6.0
REFINER_NEGATIVE_SCORE = 2.5
# An inpainting UNet's masked-image channels when no mask is given: ComfyUI's SD latent of an all-grey image
# (0 in the VAE's -1..1 pixel range).
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


def pad_to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """A latent padded at the bottom / right to whole ``patch`` x ``patch`` tiles by wrapping around, as ComfyUI
    pads DiT inputs (the caller cuts the output back)."""
    height, width = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -width % patch, 0, -height % patch), mode="circular")


def stretch_batch(value: torch.Tensor, batch: int) -> torch.Tensor:
    """``value`` with ``batch`` rows, as ComfyUI's resize_to_batch_size: each output row takes the nearest input
    row in order ([a, b] to four is [a, a, b, b])."""
    have = value.shape[0]
    if have == batch or batch <= 1:
        return value[:batch]
    if batch < have:
        index = [min(round(i * (have - 1) / (batch - 1)), have - 1) for i in range(batch)]
    else:
        index = [min(math.floor((i + 0.5) * have / batch), have - 1) for i in range(batch)]
    return value[index]


def fit_to_latent(value: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A spatial conditioning input resized (bilinear, centre-cropped to the aspect) to the sampled latent, on its
    device and dtype, its batch stretched to the latent's."""
    value = value.to(noise.device, noise.dtype)
    if value.shape[-2:] != noise.shape[-2:]:
        value = common_upscale(value, noise.shape[-1], noise.shape[-2], "bilinear", "center")
    return stretch_batch(value, noise.shape[0])


def refuse_unet_adapters(options: dict, family: str) -> None:
    """A DiT's extra_conds: ControlNets / T2I-Adapters / GLIGEN made for SD UNets cannot steer it; say so before
    any of them runs on its latent."""
    if options.get("control") is not None or options.get("gligen") is not None:
        raise ValueError(f"ControlNets, T2I-Adapters and GLIGEN made for SD UNet models do not apply to {family}")


class DiffusionModel:
    """What MODEL outputs carry. Cloning shares the network; weight patches (LoRA) live on the clone."""

    latent_channels = 4  # of the VAE latents it samples (a latent with other channels is fitted to them)

    def __init__(self, unet, family: str, prediction: str, latent_scale: float, *, latent_shift: float = 0.0,
                 zsnr: bool = False, manager=None, name: str = ""):
        self.unet = unet
        self.family = family
        self.latent_scale = latent_scale
        self.latent_shift = latent_shift  # the VAE's latent mean, taken out before scaling (FLUX / SD3 VAEs)
        self.prediction = prediction  # what it was trained to predict (ComfyUI's model_type), whatever sampling says
        self.model_sampling: ModelSampling = discrete_model_sampling(prediction, zsnr=zsnr)
        self.manager = manager
        self.name = name
        self.patches: list = []  # (lora weights, strength) applied while this clone samples
        self.model_options: dict = {"transformer_options": {}}

    def clone(self) -> "DiffusionModel":
        other = copy.copy(self)
        other.patches = list(self.patches)
        other.model_options = copy.deepcopy(self.model_options)
        return other

    # -- ComfyUI's ModelPatcher surface: what patch nodes, built-in and custom, set on a clone -----------------
    # The sampler reads these model_options (engine.sampling.guidance documents each function's arguments).

    def set_model_sampler_cfg_function(self, function, disable_cfg1_optimization: bool = False) -> None:
        if len(inspect.signature(function).parameters) == 3:  # the older (cond, uncond, cond_scale) form
            self.model_options["sampler_cfg_function"] = \
                lambda args: function(args["cond"], args["uncond"], args["cond_scale"])
        else:
            self.model_options["sampler_cfg_function"] = function
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_pre_cfg_function(self, function, disable_cfg1_optimization: bool = False) -> None:
        self.model_options = with_sampler_function(self.model_options, "sampler_pre_cfg_function", function,
                                                   disable_cfg1_optimization)

    def set_model_sampler_post_cfg_function(self, function, disable_cfg1_optimization: bool = False) -> None:
        self.model_options = with_sampler_function(self.model_options, "sampler_post_cfg_function", function,
                                                   disable_cfg1_optimization)

    def set_model_unet_function_wrapper(self, function) -> None:
        self.model_options["model_function_wrapper"] = function

    def set_model_denoise_mask_function(self, function) -> None:
        self.model_options["denoise_mask_function"] = function

    def set_model_patch(self, patch, name: str) -> None:
        """A UNet patch (engine.models.unet_patches names them: "output_block_patch", "attn1_patch", ...)."""
        self.model_options = unet_patches.with_patch(self.model_options, name, patch)

    def set_model_patch_replace(self, patch, name: str, block_name: str, number: int,
                                transformer_index: int | None = None) -> None:
        self.model_options = unet_patches.with_replacement(self.model_options, patch, name, block_name, number,
                                                           transformer_index)

    def set_model_attn1_patch(self, patch) -> None:
        self.set_model_patch(patch, "attn1_patch")

    def set_model_attn2_patch(self, patch) -> None:
        self.set_model_patch(patch, "attn2_patch")

    def set_model_attn1_output_patch(self, patch) -> None:
        self.set_model_patch(patch, "attn1_output_patch")

    def set_model_attn2_output_patch(self, patch) -> None:
        self.set_model_patch(patch, "attn2_output_patch")

    def set_model_attn1_replace(self, patch, block_name: str, number: int, transformer_index=None) -> None:
        self.set_model_patch_replace(patch, "attn1", block_name, number, transformer_index)

    def set_model_attn2_replace(self, patch, block_name: str, number: int, transformer_index=None) -> None:
        self.set_model_patch_replace(patch, "attn2", block_name, number, transformer_index)

    def set_model_input_block_patch(self, patch) -> None:
        self.set_model_patch(patch, "input_block_patch")

    def set_model_input_block_patch_after_skip(self, patch) -> None:
        self.set_model_patch(patch, "input_block_patch_after_skip")

    def set_model_output_block_patch(self, patch) -> None:
        self.set_model_patch(patch, "output_block_patch")

    @property
    def model_channels(self) -> int:
        """The UNet's base width (ComfyUI's unet_config["model_channels"])."""
        return self.unet.config.block_out_channels[0]

    def add_object_patch(self, name: str, value) -> None:
        """Replace one of the model's objects on this clone (e.g. "model_sampling")."""
        if not hasattr(self, name):
            raise AttributeError(f"{type(self).__name__} has no object {name!r} to patch")
        setattr(self, name, value)

    def get_model_object(self, name: str):
        return getattr(self, name)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (fp8-stored weights aside). Not `unet.dtype`: diffusers walks every submodule for it,
        which costs time on every step."""
        return compute_dtype(self.unet)

    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def unclip_width(self) -> int | None:
        """The label-embedding input width of an SD2 unCLIP UNet (image embedding + noise level), else None."""
        config = self.unet.config
        if getattr(config, "class_embed_type", None) != "projection":
            return None
        return config.projection_class_embeddings_input_dim

    def process_latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        return (latent - self.latent_shift) * self.latent_scale

    def process_latent_out(self, latent: torch.Tensor) -> torch.Tensor:
        return latent / self.latent_scale + self.latent_shift

    def extra_conds(self, cond: torch.Tensor, options: dict, noise: torch.Tensor, *, width: int, height: int,
                    prompt_type: str = "positive", latent_image=None, denoise_mask=None, seed: int = 0) -> dict:
        """The model inputs one conditioning entry contributes (ComfyUI's `extra_conds`); `seed` is the sampling
        seed (unCLIP's embedding noise derives from it)."""
        out = {"c_crossattn": cond}
        pooled = options.get("pooled_output")
        if self.family == "sdxl":
            ids = [options.get("height", height), options.get("width", width), options.get("crop_h", 0),
                   options.get("crop_w", 0), options.get("target_height", height), options.get("target_width", width)]
        elif self.family == "sdxl_refiner":
            default = REFINER_NEGATIVE_SCORE if prompt_type == "negative" else REFINER_POSITIVE_SCORE
            ids = [options.get("height", height), options.get("width", width), options.get("crop_h", 0),
                   options.get("crop_w", 0), options.get("aesthetic_score", default)]
        else:
            ids = None
        if ids is not None:
            pooled_width = self.unet.config.projection_class_embeddings_input_dim - 256 * len(ids)
            if options.get("unclip_conditioning"):  # revision: image embeddings replace the pooled text
                pooled = unclip.sdxl_pooled(options["unclip_conditioning"], seed, pooled_width)
            elif pooled is None:
                pooled = torch.zeros((1, pooled_width))
            out["text_embeds"] = pooled
            out["time_ids"] = torch.tensor([ids], dtype=torch.float32).repeat(pooled.shape[0], 1)
        elif self.unclip_width is not None:
            out["class_labels"] = unclip.sd2_adm(
                options.get("unclip_conditioning"), seed, self.unclip_width,
                options.get("unclip_noise_augment_merge", unclip.SD2_MERGE_AUGMENTATION))
        if self.in_channels == 9:  # inpainting UNet: mask + masked image as extra input channels
            out["c_concat"] = self._inpaint_concat(noise, latent_image, denoise_mask, options)
        elif self.in_channels == 8:  # instruct-pix2pix UNet: the image to edit as extra input channels
            image = options.get("concat_latent_image")
            # ComfyUI feeds the VAE latent as encoded, unscaled (diffusers' pix2pix pipeline does the same).
            out["c_concat"] = torch.zeros_like(noise) if image is None else fit_to_latent(image, noise)
        return out

    def _inpaint_concat(self, noise, latent_image, denoise_mask, options) -> torch.Tensor:
        """The mask and masked-image channels of an inpainting UNet. The conditioning's "concat_mask" /
        "concat_latent_image" (InpaintModelConditioning) take precedence over the sampling's noise mask and
        latent. The latent goes in as sampled (already in model space), not multiplied by the mask:
        VAEEncodeForInpaint greys the masked pixels out before encoding, and with SetLatentNoiseMask ComfyUI
        hands the whole image over as well."""
        mask = options.get("concat_mask", denoise_mask)
        if mask is None:  # everything is painted, over a blank image
            mask = torch.ones_like(noise[:, :1])
            image = torch.tensor(BLANK_INPAINT_LATENT, device=noise.device, dtype=noise.dtype)
            return torch.cat((mask, image.reshape(1, -1, 1, 1).expand_as(noise)), dim=1)
        if options.get("concat_latent_image") is not None:
            image = fit_to_latent(self.process_latent_in(options["concat_latent_image"]), noise)
        else:
            image = torch.zeros_like(noise) if latent_image is None else latent_image.to(noise)
        if mask.ndim == noise.ndim:  # a noise mask shaped like the latent: one channel is the mask
            mask = mask[:, :1]
        return torch.cat((fit_to_latent(mask.reshape(-1, 1, *mask.shape[-2:]).float(), noise).round(), image), dim=1)

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, *, c_crossattn: torch.Tensor,
                    text_embeds=None, time_ids=None, class_labels=None, c_concat=None, control=None, gligen=None,
                    transformer_options=None, **unused) -> torch.Tensor:
        """`control`: the Residuals (engine.models.controlnet) that ControlNets / T2I-Adapters add, or None;
        `gligen`: a cond's GLIGEN entry (engine.models.gligen), or None; `transformer_options`: ComfyUI's, with the
        UNet patches to apply (engine.models.unet_patches)."""
        ms = self.model_sampling
        sigma = sigma.to(x.device)
        model_input = ms.calculate_input(sigma, x)
        if c_concat is not None:
            model_input = torch.cat((model_input, c_concat.to(x)), dim=1)
        dtype = self.dtype
        added = None
        if text_embeds is not None:
            added = {"text_embeds": text_embeds.to(x.device, dtype), "time_ids": time_ids.to(x.device, dtype)}
        with self.manager.running(self) if self.manager else contextlib.nullcontext():
            residuals = control.unet_kwargs(self.unet, x.device) if control is not None else {}
            grounding = {}
            if gligen is not None:
                from .gligen import grounding_kwargs  # diffusers' GLIGEN modules are imported when first used
                grounding = grounding_kwargs(gligen, self.unet, x)
            with unet_patches.applied(self.unet, transformer_options or {}, x):
                output = self.unet(model_input.to(dtype), ms.timestep(sigma).float(),
                                   encoder_hidden_states=c_crossattn.to(x.device, dtype),
                                   class_labels=None if class_labels is None else class_labels.to(x.device, dtype),
                                   added_cond_kwargs=added, return_dict=False, **residuals, **grounding)[0].float()
        return ms.calculate_denoised(sigma, output, x)
