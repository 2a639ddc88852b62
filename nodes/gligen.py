"""GLIGEN nodes: loading a GLIGEN text-box model and placing text boxes in a conditioning."""
from __future__ import annotations

from engine import folders

from . import MAX_RESOLUTION
from .loaders import cached_model


class GLIGENLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"gligen_name": (folders.get_filename_list("gligen"),)}}

    RETURN_TYPES = ("GLIGEN",)
    FUNCTION = "load_gligen"
    CATEGORY = "loaders"

    def load_gligen(self, gligen_name):
        from engine.models.gligen import load_gligen_file

        return (cached_model("gligen", gligen_name,
                             lambda path, manager: load_gligen_file(path, manager.load_device, manager.unet_dtype())),)


class GLIGENTextBoxApply:
    @classmethod
    def INPUT_TYPES(cls):
        position = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        size = {"default": 64, "min": 8, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"conditioning_to": ("CONDITIONING",), "clip": ("CLIP",),
                             "gligen_textbox_model": ("GLIGEN",),
                             "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "width": ("INT", dict(size)), "height": ("INT", dict(size)),
                             "x": ("INT", dict(position)), "y": ("INT", dict(position))}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"
    CATEGORY = "conditioning/gligen"

    def append(self, conditioning_to, clip, gligen_textbox_model, text, width, height, x, y):
        _, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled="unprojected")
        box = (pooled, height // 8, width // 8, y // 8, x // 8)  # latent pixels, as the sampler reads them
        out = []
        for cond, options in conditioning_to:
            earlier = list(options["gligen"][2]) if "gligen" in options else []
            out.append([cond, {**options, "gligen": ("position", gligen_textbox_model, earlier + [box])}])
        return (out,)


NODE_CLASS_MAPPINGS = {"GLIGENLoader": GLIGENLoader, "GLIGENTextBoxApply": GLIGENTextBoxApply}
