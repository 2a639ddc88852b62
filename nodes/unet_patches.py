"""Patch nodes that act inside an SD UNet: each returns a MODEL clone carrying UNet patches in its model_options
(engine.models.unet_patches applies them while the UNet runs)."""
from __future__ import annotations

from engine.models import freeu
from engine.models.hypertile import HyperTile as HyperTiling
from engine.models.token_merging import TokenMerging
from engine.models.unet_patches import attention, with_replacement
from engine.resize import common_upscale
from engine.sampling import sag
from engine.sampling.guidance import calc_cond_batch


class FreeU:
    DEFAULTS = {"b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}
    STRUCTURE_AWARE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), **{
            name: ("FLOAT", {"default": default, "min": 0.0, "max": 10.0, "step": 0.01})
            for name, default in cls.DEFAULTS.items()}}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_freelunch"

    def patch(self, model, b1, b2, s1, s2):
        model = model.clone()
        model.set_model_output_block_patch(
            freeu.output_block_patch(model.model_channels, b1, b2, s1, s2, self.STRUCTURE_AWARE))
        return (model,)


class FreeU_V2(FreeU):
    DEFAULTS = {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}
    STRUCTURE_AWARE = True


class _V3Patch:
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"
    DISPLAY_NAME = None
    API_NODE = False


class PerturbedAttentionGuidance(_V3Patch):
    """PAG (Ahn et al. 2024): guidance away from a prediction whose middle-block self-attention is replaced by
    the identity (each token attends only to itself: the output is its value)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                                 "round": 0.01})}}

    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_pag"

    def patch(self, model, scale):
        def guided(args):
            if scale == 0:
                return args["denoised"]
            options = with_replacement(args["model_options"], lambda q, k, v, extra, mask=None: v, "attn1",
                                       "middle", 0)
            (perturbed,) = calc_cond_batch(args["model"], [args["cond"]], args["input"], args["sigma"], options)
            return args["denoised"] + (args["cond_denoised"] - perturbed) * scale

        model = model.clone()
        model.set_model_sampler_post_cfg_function(guided)
        return (model,)


class SelfAttentionGuidance:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "scale": ("FLOAT", {"default": 0.5, "min": -2.0, "max": 5.0, "step": 0.01}),
                             "blur_sigma": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 10.0, "step": 0.1})}}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"
    DISPLAY_NAME = "Self-Attention Guidance"
    EXPERIMENTAL = True
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_sag"

    def patch(self, model, scale, blur_sigma):
        recorded = {}

        def record_negative_attention(q, k, v, extra):
            """The middle block's first self-attention; on a batch with the negative prompt, its scores too."""
            heads, cond_or_uncond = extra["n_heads"], extra["cond_or_uncond"]
            if 1 not in cond_or_uncond:
                return attention(q, k, v, heads)
            out, scores = sag.attention_with_scores(q, k, v, heads)
            per_list = heads * (q.shape[0] // len(cond_or_uncond))
            start = per_list * cond_or_uncond.index(1)
            recorded["scores"] = scores[start:start + per_list]
            return out

        def guided(args):
            denoised = args["denoised"]
            if min(denoised.shape[2:]) <= 4:  # too small for the blur's padding
                return denoised
            x, negative = args["input"], args["uncond_denoised"]
            blurred = sag.degraded(negative, recorded["scores"], blur_sigma)
            (prediction,) = calc_cond_batch(args["model"], [args["uncond"]], blurred + x - negative, args["sigma"],
                                            args["model_options"])
            return denoised + (blurred - prediction) * scale

        model = model.clone()
        model.set_model_sampler_post_cfg_function(guided, disable_cfg1_optimization=True)
        model.set_model_attn1_replace(record_negative_attention, "middle", 0, 0)
        return (model,)


class PatchModelAddDownscale(_V3Patch):
    """Kohya's Deep Shrink: between two sigmas, what input block `block_number` hands on is shrunk by
    `downscale_factor`, so the deeper blocks work at a smaller size; each output block enlarges h back to the size
    of the skip it joins."""

    METHODS = ["bicubic", "nearest-exact", "bilinear", "area", "bislerp"]

    @classmethod
    def INPUT_TYPES(cls):
        def fraction(default, low, high):
            return ("FLOAT", {"default": default, "min": low, "max": high, "step": 0.001})
        return {"required": {
            "model": ("MODEL", {}),
            "block_number": ("INT", {"default": 3, "min": 1, "max": 32, "step": 1}),
            "downscale_factor": fraction(2.0, 0.1, 9.0), "start_percent": fraction(0.0, 0.0, 1.0),
            "end_percent": fraction(0.35, 0.0, 1.0),
            "downscale_after_skip": ("BOOLEAN", {"default": True}),
            "downscale_method": ("COMBO", {"multiselect": False, "options": cls.METHODS}),
            "upscale_method": ("COMBO", {"multiselect": False, "options": cls.METHODS})}}

    DISPLAY_NAME = "PatchModelAddDownscale (Kohya Deep Shrink)"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_downscale"

    def patch(self, model, block_number, downscale_factor, start_percent, end_percent, downscale_after_skip,
              downscale_method, upscale_method):
        sampling = model.get_model_object("model_sampling")
        sigma_start, sigma_end = sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent)

        def shrink(h, transformer_options):
            if transformer_options["block"][1] == block_number:
                sigma = transformer_options["sigmas"][0].item()
                if sigma_end <= sigma <= sigma_start:
                    scale = 1.0 / downscale_factor
                    h = common_upscale(h, round(h.shape[-1] * scale), round(h.shape[-2] * scale), downscale_method)
            return h

        def regrow(h, hsp, transformer_options):
            if h.shape[2] != hsp.shape[2]:
                h = common_upscale(h, hsp.shape[-1], hsp.shape[-2], upscale_method)
            return h, hsp

        model = model.clone()
        if downscale_after_skip:
            model.set_model_input_block_patch_after_skip(shrink)
        else:
            model.set_model_input_block_patch(shrink)
        model.set_model_output_block_patch(regrow)
        return (model,)


class HyperTile(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "tile_size": ("INT", {"default": 256, "min": 1, "max": 2048}),
                             "swap_size": ("INT", {"default": 2, "min": 1, "max": 128}),
                             "max_depth": ("INT", {"default": 0, "min": 0, "max": 10}),
                             "scale_depth": ("BOOLEAN", {"default": False})}}

    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_hypertile"

    def patch(self, model, tile_size, swap_size, max_depth, scale_depth):
        tiling = HyperTiling(tile_size, swap_size, max_depth, scale_depth)
        model = model.clone()
        model.set_model_attn1_patch(tiling.tile)
        model.set_model_attn1_output_patch(tiling.untile)
        return (model,)


class TomePatchModel(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "ratio": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_tomesd"

    def patch(self, model, ratio):
        merging = TokenMerging(ratio)
        model = model.clone()
        model.set_model_attn1_patch(merging.merge)
        model.set_model_attn1_output_patch(merging.restore)
        return (model,)


NODE_CLASS_MAPPINGS = {"FreeU": FreeU, "FreeU_V2": FreeU_V2, "PerturbedAttentionGuidance": PerturbedAttentionGuidance,
                       "SelfAttentionGuidance": SelfAttentionGuidance, "PatchModelAddDownscale": PatchModelAddDownscale,
                       "HyperTile": HyperTile, "TomePatchModel": TomePatchModel}
