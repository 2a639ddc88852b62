"""SD3 text nodes (ComfyUI's comfy_extras/nodes_sd3.py): the three-encoder loader and per-encoder prompts."""
from __future__ import annotations

from engine import folders
from engine.models.clip import pad_token_lists

from .loaders import text_encoder_files

MODULE = "comfy_extras.nodes_sd3"
PROMPT = ("STRING", {"multiline": True, "dynamicPrompts": True})


class TripleCLIPLoader:
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        names = ("COMBO", {"multiselect": False, "options": folders.get_filename_list("text_encoders")})
        return {"required": {"clip_name1": names, "clip_name2": names, "clip_name3": names}}

    RETURN_TYPES = ("CLIP",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = "[Recipes]\n\nsd3: clip-l, clip-g, t5"
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = MODULE

    def load_clip(self, clip_name1, clip_name2, clip_name3):
        return (text_encoder_files([clip_name1, clip_name2, clip_name3], "sd3"),)


class CLIPTextEncodeSD3:
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP", {}), "clip_l": PROMPT, "clip_g": PROMPT, "t5xxl": PROMPT,
                             "empty_padding": ("COMBO", {"multiselect": False, "options": ["none", "empty_prompt"]})}}

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning"
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = MODULE

    def encode(self, clip, clip_l, clip_g, t5xxl, empty_padding):
        # "none": an empty field gives its encoder no tokens at all, instead of the empty prompt's window.
        skip_empty = empty_padding == "none"
        tokens = clip.tokenize(clip_g)
        for name, prompt in (("g", clip_g), ("l", clip_l), ("t5xxl", t5xxl)):
            if skip_empty and not prompt:
                tokens[name] = []
            elif name != "g":
                tokens[name] = clip.tokenize(prompt)[name]
        pad_token_lists(tokens["l"], tokens["g"], {"l": clip.empty_chunk("l"), "g": clip.empty_chunk("g")})
        cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        return ([[cond, {"pooled_output": pooled}]],)


NODE_CLASS_MAPPINGS = {"TripleCLIPLoader": TripleCLIPLoader, "CLIPTextEncodeSD3": CLIPTextEncodeSD3}
