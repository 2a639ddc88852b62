"""Patch nodes that change how the sampler combines the positive and negative predictions: each returns a MODEL
clone carrying a guidance function in its model_options (engine.sampling.guidance calls them; the maths is in
engine.sampling.cfg_variants)."""
from __future__ import annotations

from engine.sampling import cfg_variants
from engine.sampling.guidance import calc_cond_batch, perp_neg, prepare


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


class RenormCFG:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "cfg_trunc": ("FLOAT", {"default": 100, "min": 0.0, "max": 100.0, "step": 0.01}),
                             "renorm_cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    DISPLAY_NAME = None
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_lumina2"

    def patch(self, model, cfg_trunc, renorm_cfg):
        channels = getattr(model, "in_channels", None)

        def renormed(args):
            cond = args["cond_denoised"]
            if args["timestep"][0] < cfg_trunc:  # the timestep ComfyUI passes is the sigma
                guided = cfg_variants.renorm_cfg(cond, args["uncond_denoised"], args["cond_scale"], renorm_cfg,
                                                 channels or cond.shape[1])
            else:  # above the truncation sigma: no guidance at all
                guided = cond
            return args["input"] - guided

        model = model.clone()
        model.set_model_sampler_cfg_function(renormed)
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


def _with_negative(function):
    """A sampler_pre_cfg_function rewriting the (positive, negative) predictions with `function(cond, uncond,
    args)`; without a negative pass (cfg 1) there is nothing to rewrite."""
    def pre_cfg(args):
        out = args["conds_out"]
        if len(out) < 2 or any(c is None for c in args["conds"][:2]):
            return out
        return [*function(out[0], out[1], args), *out[2:]]
    return pre_cfg


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
        model = model.clone()
        model.set_model_sampler_pre_cfg_function(_with_negative(
            lambda cond, uncond, args: (cond, cfg_variants.tangential_damping(args["input"], cond, uncond))))
        return (model,)




class APG(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "eta": ("FLOAT", {"tooltip": "Controls the scale of the parallel guidance vector. Default CFG behavior at "
                                         "a setting of 1.", "default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
            "norm_threshold": ("FLOAT", {"tooltip": "Normalize guidance vector to this value, normalization disable "
                                                    "at a setting of 0.",
                                         "default": 5.0, "min": 0.0, "max": 50.0, "step": 0.1}),
            "momentum": ("FLOAT", {"tooltip": "Controls a running average of guidance during diffusion, disabled at a "
                                              "setting of 0.", "default": 0.0, "min": -5.0, "max": 1.0, "step": 0.01})}}

    RETURN_NAMES = ("MODEL",)
    DISPLAY_NAME = "Adaptive Projected Guidance"
    CATEGORY = "sampling/custom_sampling"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_apg"

    def patch(self, model, eta, norm_threshold, momentum):
        guidance = cfg_variants.AdaptiveProjectedGuidance(eta, norm_threshold, momentum)
        model = model.clone()
        model.set_model_sampler_pre_cfg_function(_with_negative(
            lambda cond, uncond, args: (guidance(cond, uncond, float(args["sigma"][0]), args["cond_scale"]), uncond)))
        return (model,)


class EpsilonScaling(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "scaling_factor": ("FLOAT", {"default": 1.005, "min": 0.5, "max": 1.5, "step": 0.001,
                                                          "display": "number"})}}

    RETURN_NAMES = ("MODEL",)
    CATEGORY = "model_patches/unet"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_eps"

    def patch(self, model, scaling_factor):
        factor = scaling_factor or 1e-9
        model = model.clone()
        model.set_model_sampler_post_cfg_function(
            lambda args: cfg_variants.epsilon_scaling(args["input"], args["denoised"], factor))
        return (model,)


class FreSca(_V3Patch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "scale_low": ("FLOAT", {"tooltip": "Scaling factor for low-frequency components", "default": 1.0,
                                    "min": 0, "max": 10, "step": 0.01}),
            "scale_high": ("FLOAT", {"tooltip": "Scaling factor for high-frequency components", "default": 1.25,
                                     "min": 0, "max": 10, "step": 0.01}),
            "freq_cutoff": ("INT", {"tooltip": "Number of frequency indices around center to consider as "
                                               "low-frequency", "default": 20, "min": 1, "max": 10000, "step": 1})}}

    RETURN_NAMES = ("MODEL",)
    DISPLAY_NAME = "FreSca"
    DESCRIPTION = "Applies frequency-dependent scaling to the guidance"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_fresca"

    def patch(self, model, scale_low, scale_high, freq_cutoff):
        model = model.clone()
        model.set_model_sampler_pre_cfg_function(_with_negative(
            lambda cond, uncond, args: (cfg_variants.frequency_scaled(cond - uncond, scale_low, scale_high,
                                                                      freq_cutoff) + uncond, uncond)))
        return (model,)


class PerpNeg(_V3Patch):
    """Perp-Neg as a model patch (superseded upstream by PerpNegGuider): the empty prompt's prediction is made
    inside the guidance function at each step."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}), "empty_conditioning": ("CONDITIONING", {}),
                             "neg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_NAMES = ("MODEL",)
    DISPLAY_NAME = "Perp-Neg (DEPRECATED by PerpNegGuider)"
    CATEGORY = "_for_testing"
    DEPRECATED = True
    EXPERIMENTAL = True
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_perpneg"

    def patch(self, model, empty_conditioning, neg_scale):
        def guided(args):
            x, model_ = args["input"], args["model"]
            empty = prepare(empty_conditioning, model_, x, prompt_type="negative")
            (nothing,) = calc_cond_batch(model_, [empty], x, args["sigma"], args["model_options"])
            return x - perp_neg(x, args["cond_denoised"], args["uncond_denoised"], nothing, neg_scale,
                                args["cond_scale"])

        model = model.clone()
        model.set_model_sampler_cfg_function(guided)
        return (model,)


NODE_CLASS_MAPPINGS = {"RescaleCFG": RescaleCFG, "RenormCFG": RenormCFG, "CFGZeroStar": CFGZeroStar,
                       "CFGNorm": CFGNorm, "Mahiro": Mahiro, "TCFG": TCFG, "APG": APG,
                       "Epsilon Scaling": EpsilonScaling, "FreSca": FreSca, "PerpNeg": PerpNeg}
