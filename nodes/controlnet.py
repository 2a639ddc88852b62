"""ControlNet / T2I-Adapter loading and applying, and the Canny preprocessor."""
from __future__ import annotations

from engine import context, folders
from engine.canny import canny

from .loaders import model_path

CATEGORY = "conditioning/controlnet"


def load_control_path(path, *, diff_model=None):
    """A hintless CONTROL_NET for the file at `path`; plain files are cached while unchanged."""
    from engine.models.controlnet import load_control_file

    manager = context.model_manager()
    if diff_model is not None:  # its weights depend on the model, so it is built for each one
        with manager.running(diff_model):
            control = load_control_file(path, manager.load_device, manager.unet_dtype(), diff_unet=diff_model.unet)
    else:
        control = manager.cached("controlnet", path,
                                 lambda: load_control_file(path, manager.load_device, manager.unet_dtype()))
    control = control.copy()
    control.manager = manager
    return control


class ControlNetLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"control_net_name": (folders.get_filename_list("controlnet"),)}}

    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    def load_controlnet(self, control_net_name):
        return (load_control_path(model_path("controlnet", control_net_name)),)


class DiffControlNetLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "control_net_name": (folders.get_filename_list("controlnet"),)}}

    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    def load_controlnet(self, model, control_net_name):
        return (load_control_path(model_path("controlnet", control_net_name), diff_model=model),)


def _strength():
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})


def _percent(default):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001})


class ControlNetApply:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",), "strength": _strength()}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"
    DEPRECATED = True
    CATEGORY = CATEGORY

    def apply_controlnet(self, conditioning, control_net, image, strength):
        if strength == 0:
            return (conditioning,)
        hint = image.movedim(-1, 1)
        out = []
        for tensor, options in conditioning:
            control = control_net.copy().set_cond_hint(hint, strength)
            control.set_previous_controlnet(options.get("control"))
            # the sampler also gives this control to the negative prompt (guidance.share_control_with_uncond)
            out.append([tensor, dict(options, control=control, control_apply_to_uncond=True)])
        return (out,)


class ControlNetApplyAdvanced:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",), "image": ("IMAGE",), "strength": _strength(),
                             "start_percent": _percent(0.0), "end_percent": _percent(1.0)},
                "optional": {"vae": ("VAE",)}}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"
    CATEGORY = CATEGORY

    def apply_controlnet(self, positive, negative, control_net, image, strength, start_percent, end_percent,
                         vae=None, extra_concat=()):
        if strength == 0:
            return (positive, negative)
        hint = image.movedim(-1, 1)
        # One new control per control already there, shared by positive and negative so they stay batched.
        made = {}
        out = []
        for conditioning in (positive, negative):
            entries = []
            for tensor, options in conditioning:
                previous = options.get("control")
                if previous not in made:
                    made[previous] = control_net.copy().set_cond_hint(
                        hint, strength, (start_percent, end_percent), vae=vae, extra_concat=extra_concat,
                    ).set_previous_controlnet(previous)
                entries.append([tensor, dict(options, control=made[previous], control_apply_to_uncond=False)])
            out.append(entries)
        return tuple(out)


class Canny:
    @classmethod
    def INPUT_TYPES(cls):
        threshold = {"min": 0.01, "max": 0.99, "step": 0.01}
        return {"required": {"image": ("IMAGE", {}),
                             "low_threshold": ("FLOAT", {"default": 0.4, **threshold}),
                             "high_threshold": ("FLOAT", {"default": 0.8, **threshold})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "detect_edge"
    CATEGORY = "image/preprocessors"
    DISPLAY_NAME = None
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_canny"

    def detect_edge(self, image, low_threshold, high_threshold):
        edges = canny(image.movedim(-1, 1), low_threshold, high_threshold)
        return (edges.repeat(1, 3, 1, 1).movedim(1, -1),)


NODE_CLASS_MAPPINGS = {
    "ControlNetLoader": ControlNetLoader, "DiffControlNetLoader": DiffControlNetLoader,
    "ControlNetApply": ControlNetApply, "ControlNetApplyAdvanced": ControlNetApplyAdvanced, "Canny": Canny,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ControlNetLoader": "Load ControlNet Model", "DiffControlNetLoader": "Load ControlNet Model (diff)",
    "ControlNetApply": "Apply ControlNet (OLD)", "ControlNetApplyAdvanced": "Apply ControlNet",
}
