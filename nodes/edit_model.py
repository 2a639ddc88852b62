"""ReferenceLatent (ComfyUI's comfy_extras/nodes_edit_model.py): reference images for edit models (FLUX Kontext
and the like), as raw VAE latents in the conditioning's "reference_latents" list."""
from __future__ import annotations


class ReferenceLatent:
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING", {})}, "optional": {"latent": ("LATENT", {})}}

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "append"
    CATEGORY = "advanced/conditioning/edit_models"
    DESCRIPTION = ("This node sets the guiding latent for an edit model. If the model supports it you can chain "
                   "multiple to set multiple reference images.")
    DISPLAY_NAME = None
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_edit_model"

    def append(self, conditioning, latent=None):
        if latent is None:
            return (conditioning,)
        # Chained nodes add to the list; each entry gets a new list, the earlier one is left as it was.
        return ([[cond, {**options, "reference_latents": [*(options.get("reference_latents") or []),
                                                          latent["samples"]]}]
                 for cond, options in conditioning],)


NODE_CLASS_MAPPINGS = {"ReferenceLatent": ReferenceLatent}
