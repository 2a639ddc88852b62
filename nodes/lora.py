"""LoRA loader nodes: patch MODEL and CLIP clones with a LoRA from models/loras."""
from __future__ import annotations

from engine import folders

from .loaders import cached_model

STRENGTH = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}


def load_lora_file(name: str):
    """The LoraPatch of models/loras/``name``, cached while the file is unchanged."""
    from engine.models.lora import load_lora

    return cached_model("loras", name, lambda path, manager: load_lora(path))


class LoraLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
            "lora_name": (folders.get_filename_list("loras"), {"tooltip": "The name of the LoRA."}),
            "strength_model": ("FLOAT", {**STRENGTH, "tooltip": "How strongly to modify the diffusion model. "
                                                                "This value can be negative."}),
            "strength_clip": ("FLOAT", {**STRENGTH, "tooltip": "How strongly to modify the CLIP model. "
                                                               "This value can be negative."}),
        }}

    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "load_lora"
    CATEGORY = "loaders"
    DESCRIPTION = ("LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are "
                   "denoised such as applying styles. Multiple LoRA nodes can be linked together.")

    def load_lora(self, model, clip, lora_name, strength_model, strength_clip):
        from engine.models.lora import apply_lora

        if strength_model == 0 and strength_clip == 0:
            return (model, clip)
        return apply_lora(model, clip, load_lora_file(lora_name), strength_model, strength_clip)


class LoraLoaderModelOnly(LoraLoader):
    # Declared as upstream declares it: a LoraLoader subclass, so it keeps its description and output tooltips.
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "lora_name": (folders.get_filename_list("loras"),),
                             "strength_model": ("FLOAT", dict(STRENGTH))}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_lora_model_only"

    def load_lora_model_only(self, model, lora_name, strength_model):
        return (self.load_lora(model, None, lora_name, strength_model, 0)[0],)


NODE_CLASS_MAPPINGS = {"LoraLoader": LoraLoader, "LoraLoaderModelOnly": LoraLoaderModelOnly}
NODE_DISPLAY_NAME_MAPPINGS = {"LoraLoader": "Load LoRA"}
