"""Text conditioning nodes: CLIPTextEncode (and SDXL's variants) and CLIPSetLastLayer."""
from __future__ import annotations

from engine.models.clip import pad_token_lists

from . import MAX_RESOLUTION


class CLIPTextEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"
    DESCRIPTION = ("Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
                   "diffusion model towards generating specific images.")

    def encode(self, clip, text):
        if clip is None:
            raise RuntimeError("ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node "
                               "your checkpoint does not contain a valid clip or text encoder model.")
        return (clip.encode(text),)


class CLIPSetLastLayer:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",),
                             "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"
    CATEGORY = "conditioning"

    def set_last_layer(self, clip, stop_at_clip_layer):
        clip = clip.clone()
        clip.clip_layer(stop_at_clip_layer)
        return (clip,)


def _size(default=1024):
    return ("INT", {"default": default, "min": 0, "max": MAX_RESOLUTION})


class CLIPTextEncodeSDXL:
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_clip_sdxl"
    DISPLAY_NAME = None  # upstream's V3 declaration gives none
    OUTPUT_TOOLTIPS = (None,)
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {}),
            "width": _size(), "height": _size(), "crop_w": _size(0), "crop_h": _size(0),
            "target_width": _size(), "target_height": _size(),
            "text_g": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "text_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning"

    def encode(self, clip, width, height, crop_w, crop_h, target_width, target_height, text_g, text_l):
        tokens = clip.tokenize(text_g)
        tokens["l"] = clip.tokenize(text_l)["l"]
        pad_token_lists(tokens["l"], tokens["g"], {"l": clip.empty_chunk("l"), "g": clip.empty_chunk("g")})
        cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        return ([[cond, {"pooled_output": pooled, "width": width, "height": height, "crop_w": crop_w,
                         "crop_h": crop_h, "target_width": target_width, "target_height": target_height}]],)


class CLIPTextEncodeSDXLRefiner:
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_clip_sdxl"
    DISPLAY_NAME = None
    OUTPUT_TOOLTIPS = (None,)
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ascore": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}),
            "width": _size(), "height": _size(),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "clip": ("CLIP", {}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning"

    def encode(self, clip, ascore, width, height, text):
        cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
        return ([[cond, {"pooled_output": pooled, "aesthetic_score": ascore, "width": width, "height": height}]],)


NODE_CLASS_MAPPINGS = {
    "CLIPTextEncode": CLIPTextEncode, "CLIPSetLastLayer": CLIPSetLastLayer,
    "CLIPTextEncodeSDXL": CLIPTextEncodeSDXL, "CLIPTextEncodeSDXLRefiner": CLIPTextEncodeSDXLRefiner,
}
NODE_DISPLAY_NAME_MAPPINGS = {"CLIPTextEncode": "CLIP Text Encode (Prompt)", "CLIPSetLastLayer": "CLIP Set Last Layer"}
