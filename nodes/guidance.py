"""Patch nodes that change how the sampler combines the positive and negative predictions: each returns a MODEL
clone carrying a guidance function in its model_options (engine.sampling.guidance calls them; the maths is in
engine.sampling.cfg_variants)."""
from __future__ import annotations

from engine.sampling import cfg_variants


class RescaleCFG:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "multiplier": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

    def patch(self, model, multiplier):
        def rescaled(args):  # a sampler_cfg_function answers in noise terms: input minus the guided x0
            x = args["input"]
            return x - cfg_variants.rescale_cfg(x, args["sigma"], args["cond_denoised"], args["uncond_denoised"],
                                                args["cond_scale"], multiplier)

        model = model.clone()
        model.set_model_sampler_cfg_function(rescaled)
        return (model,)


class _V3Patch:
    """Declaration details that ComfyUI's newer node API adds to every node."""

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("patched_model",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "patch"
    DISPLAY_NAME = None
    API_NODE = False


class CFGZeroStar(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {})}}

    CATEGORY = "advanced/guidance"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_cfg"

    def patch(self, model):
        model = model.clone()
        model.set_model_sampler_post_cfg_function(lambda args: cfg_variants.cfg_zero_star(
            args["input"], args["denoised"], args["cond_denoised"], args["uncond_denoised"], args["cond_scale"]))
        return (model,)


class CFGNorm(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    CATEGORY = "advanced/guidance"
    EXPERIMENTAL = True
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_cfg"

    def patch(self, model, strength):
        model = model.clone()
        model.set_model_sampler_post_cfg_function(
            lambda args: cfg_variants.cfg_norm(args["denoised"], args["cond_denoised"], strength))
        return (model,)


class Mahiro(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {})}}

    DISPLAY_NAME = "Mahiro is so cute that she deserves a better guidance function!! (。・ω・。)"
    DESCRIPTION = ("Modify the guidance to scale more on the 'direction' of the positive prompt rather than the "
                   "difference between the negative prompt.")
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_mahiro"

    def patch(self, model):
        model = model.clone()
        model.set_model_sampler_post_cfg_function(lambda args: cfg_variants.mahiro(
            args["denoised"], args["cond_denoised"], args["uncond_denoised"], args["cond_scale"]))
        return (model,)


class TCFG(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {})}}

    DISPLAY_NAME = "Tangential Damping CFG"
    DESCRIPTION = ("TCFG – Tangential Damping CFG (2503.18137)\n\nRefine the uncond (negative) to align with the "
                   "cond (positive) for improving quality.")
    CATEGORY = "advanced/guidance"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_tcfg"

    def patch(self, model):
        def damped(args):
            out = args["conds_out"]
            if len(out) < 2 or any(c is None for c in args["conds"][:2]):  # no negative pass to damp
                return out
            return [out[0], cfg_variants.tangential_damping(args["input"], out[0], out[1]), *out[2:]]

        model = model.clone()
        model.set_model_sampler_pre_cfg_function(damped)
        return (model,)


NODE_CLASS_MAPPINGS = {"RescaleCFG": RescaleCFG, "CFGZeroStar": CFGZeroStar, "CFGNorm": CFGNorm, "Mahiro": Mahiro,
                       "TCFG": TCFG}
