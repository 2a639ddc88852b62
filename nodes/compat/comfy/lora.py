"""`comfy.lora`: ComfyUI's LoRA weight patching, for packs that import it. comfyd applies LoRAs in its engine
(LoraLoader, comfy.sd.load_lora_for_models), not through ComfyUI's patch lists, so `calculate_weight` raises
NotImplementedError when called."""
from __future__ import annotations


def calculate_weight(patches, weight, key, intermediate_dtype=None, original_weights=None):
    """ComfyUI's patch-list application (not available: raises NotImplementedError)."""
    raise NotImplementedError("comfyd applies LoRAs in its engine: comfy.lora.calculate_weight is not available; "
                              "use comfy.sd.load_lora_for_models")
