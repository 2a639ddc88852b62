"""Style model nodes: load a T2I style adapter or a FLUX.1 Redux image encoder and add the tokens it reads off an
image to a conditioning."""
from __future__ import annotations

import torch

from engine import folders

from .loaders import cached_model


class StyleModelLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"style_model_name": (folders.get_filename_list("style_models"),)}}

    RETURN_TYPES = ("STYLE_MODEL",)
    FUNCTION = "load_style_model"
    CATEGORY = "loaders"

    def load_style_model(self, style_model_name):
        from engine.models.style_model import load_style_model_file

        return (cached_model("style_models", style_model_name,
                             lambda path, manager: load_style_model_file(path, manager.load_device)),)


def append_style_tokens(cond: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``cond`` [B, T, C] followed along the token axis by ``tokens`` [1, N, C] (repeated for each batch entry)."""
    tokens = tokens.to(device=cond.device, dtype=cond.dtype).expand(cond.shape[0], -1, -1)
    return torch.cat([cond, tokens], dim=1)


class StyleModelApply:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "style_model": ("STYLE_MODEL",),
                             "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
                             "strength_type": (["multiply", "attn_bias"],)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_stylemodel"
    CATEGORY = "conditioning/style_model"

    def apply_stylemodel(self, conditioning, style_model, clip_vision_output, strength, strength_type):
        # Every image's tokens, one after another, as a single sequence shared by all conds.
        tokens = style_model.get_cond(clip_vision_output).flatten(0, 1).unsqueeze(0)
        if strength_type == "multiply":
            tokens = tokens * strength
        out = []
        for cond, options in conditioning:
            # attn_bias at 1.0 biases nothing; any other bias, or an existing mask to extend, needs the sampler
            # to apply attention masks, which it does not.
            if "attention_mask" in options or (strength_type == "attn_bias" and strength != 1.0):
                raise NotImplementedError("StyleModelApply: attention masks (strength_type 'attn_bias' with a "
                                          "strength other than 1.0, or a conditioning that already has an "
                                          "attention_mask) are not supported; use strength_type 'multiply'")
            out.append([append_style_tokens(cond, tokens), dict(options)])
        return (out,)


NODE_CLASS_MAPPINGS = {"StyleModelLoader": StyleModelLoader, "StyleModelApply": StyleModelApply}
NODE_DISPLAY_NAME_MAPPINGS = {"StyleModelLoader": "Load Style Model", "StyleModelApply": "Apply Style Model"}
