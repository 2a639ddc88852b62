"""CLIP vision nodes: load an image encoder (CLIP or SigLIP; alone, or with the checkpoint that embeds one), encode
images, and condition on them (SD2 unCLIP, SDXL revision; style models such as FLUX.1 Redux read the encodings)."""
from __future__ import annotations

import os

from engine import context, folders

from .loaders import load_checkpoint_file, model_path


class CLIPVisionLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (folders.get_filename_list("clip_vision"),)}}

    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load_clip"
    CATEGORY = "loaders"

    def load_clip(self, clip_name):
        return (load_clip_vision_path(model_path("clip_vision", clip_name), clip_name),)


def load_clip_vision_path(path, name: str | None = None, *, embedded: bool = False):
    """The image encoder in the file at `path`, cached while the file is unchanged; `embedded`: the one inside a
    checkpoint (unCLIP, SVD), None when it holds none (as ComfyUI)."""
    from engine.models.clip_vision import load_clip_vision_file

    manager = context.model_manager()
    return manager.cached("checkpoint_clip_vision" if embedded else "clip_vision", path, lambda: load_clip_vision_file(
        path, manager.load_device, manager.text_dtype(), manager=manager, name=name or os.path.basename(path),
        embedded=embedded))


def checkpoint_clip_vision(ckpt_name: str):
    """The image encoder inside checkpoints/<ckpt_name>, or None."""
    return load_clip_vision_path(model_path("checkpoints", ckpt_name), ckpt_name, embedded=True)


class unCLIPCheckpointLoader:  # noqa: N801 - ComfyUI's node type name
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folders.get_filename_list("checkpoints"),)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "CLIP_VISION")
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders"

    def load_checkpoint(self, ckpt_name, output_vae=True, output_clip=True):
        return (*load_checkpoint_file(ckpt_name, clip=output_clip, vae=output_vae), checkpoint_clip_vision(ckpt_name))


class ImageOnlyCheckpointLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folders.get_filename_list("checkpoints"),)}}

    RETURN_TYPES = ("MODEL", "CLIP_VISION", "VAE")
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders/video_models"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_video_model"

    def load_checkpoint(self, ckpt_name, output_vae=True, output_clip=True):
        model, _, vae = load_checkpoint_file(ckpt_name, clip=False, vae=output_vae)
        return model, checkpoint_clip_vision(ckpt_name), vae


class CLIPVisionEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_vision": ("CLIP_VISION",), "image": ("IMAGE",), "crop": (["center", "none"],)}}

    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"

    def encode(self, clip_vision, image, crop):
        if clip_vision is None:
            raise ValueError("CLIPVisionEncode: no CLIP vision model (the checkpoint it was loaded from holds no "
                             "image encoder)")
        return (clip_vision.encode(image, crop=crop == "center"),)


class unCLIPConditioning:  # noqa: N801 - ComfyUI's node type name
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
                             "noise_augmentation": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0,
                                                              "step": 0.01})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_adm"
    CATEGORY = "conditioning"

    def apply_adm(self, conditioning, clip_vision_output, strength, noise_augmentation):
        if strength == 0:
            return (conditioning,)
        entry = {"clip_vision_output": clip_vision_output, "strength": strength,
                 "noise_augmentation": noise_augmentation}
        # Appended to each cond's own list (a new list: the input conditioning is shared with other nodes).
        return ([[cond, {**options, "unclip_conditioning": [*(options.get("unclip_conditioning") or ()), entry]}]
                 for cond, options in conditioning],)


NODE_CLASS_MAPPINGS = {"CLIPVisionLoader": CLIPVisionLoader, "CLIPVisionEncode": CLIPVisionEncode,
                       "unCLIPConditioning": unCLIPConditioning, "unCLIPCheckpointLoader": unCLIPCheckpointLoader,
                       "ImageOnlyCheckpointLoader": ImageOnlyCheckpointLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"CLIPVisionLoader": "Load CLIP Vision", "CLIPVisionEncode": "CLIP Vision Encode",
                              "ImageOnlyCheckpointLoader": "Image Only Checkpoint Loader (img2vid model)"}
