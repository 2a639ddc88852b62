"""LATENT values as files: SaveLatent writes ComfyUI's .latent format (safetensors holding `latent_tensor` and
the `latent_format_version_0` marker, the prompt in its metadata) to the output folder, LoadLatent reads one from
the input folder."""
from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load_file, save_file

from engine import folders

from .image import prompt_metadata, save_target

# Files written before the version marker hold latents multiplied by SD's scale factor.
UNVERSIONED_SCALE = 0.18215


class SaveLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "_for_testing"

    def save(self, samples, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        directory, filename, counter, subfolder = save_target("output", filename_prefix)
        name = f"{filename}_{counter:05}_.latent"
        save_file({"latent_tensor": samples["samples"].contiguous(), "latent_format_version_0": torch.tensor([])},
                  str(directory / name), metadata=prompt_metadata(prompt, extra_pnginfo))
        return {"ui": {"latents": [{"filename": name, "subfolder": subfolder, "type": "output"}]}}


class LoadLatent:
    @classmethod
    def INPUT_TYPES(cls):
        files = [name for name in folders.active().input_files() if name.endswith(".latent")]
        return {"required": {"latent": (files,)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"
    CATEGORY = "_for_testing"

    def load(self, latent):
        tensors = load_file(str(folders.get_annotated_path(latent)), device="cpu")
        scale = 1.0 if "latent_format_version_0" in tensors else 1.0 / UNVERSIONED_SCALE
        return ({"samples": tensors["latent_tensor"].float() * scale},)

    @classmethod
    def IS_CHANGED(cls, latent):
        path = folders.get_annotated_path(latent)
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else ""

    @classmethod
    def VALIDATE_INPUTS(cls, latent):
        path = folders.get_annotated_path(latent) if isinstance(latent, str) else None
        return True if path is not None and path.is_file() else f"Invalid latent file: {latent}"


NODE_CLASS_MAPPINGS = {"SaveLatent": SaveLatent, "LoadLatent": LoadLatent}
