"""Model merging and saving (ComfyUI's comfy_extras/nodes_model_merging.py and nodes_model_merging_model_specific.py).

Merges are weight patches on a clone of the first model (engine.models.merge); the save nodes write the weights,
patches applied, as .safetensors into the output folder (engine.models.saving), numbered as ComfyUI numbers saved
files, the prompt and workflow in the metadata.
"""
from __future__ import annotations

from safetensors.torch import save_file

from engine.models import merge, saving

from .image import prompt_metadata, save_target

MODULE = "comfy_extras.nodes_model_merging"
SPECIFIC_MODULE = "comfy_extras.nodes_model_merging_model_specific"
CATEGORY = "advanced/model_merging"
RATIO = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
MULTIPLIER = ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})
HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


class _Merge:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    CATEGORY = CATEGORY
    RELATIVE_PYTHON_MODULE = MODULE


class ModelMergeSimple(_Merge):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "ratio": RATIO}}

    def merge(self, model1, model2, ratio):
        return (merge.merged(model1, model2, merge.ratio(ratio)),)


class ModelMergeSubtract(_Merge):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "multiplier": MULTIPLIER}}

    def merge(self, model1, model2, multiplier):
        # multiplier * (model1 - model2), as ComfyUI computes it
        return (merge.merged(model1, model2, merge.uniform(-multiplier, multiplier)),)


class ModelMergeAdd(_Merge):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",)}}

    def merge(self, model1, model2):
        return (merge.merged(model1, model2, merge.uniform(1.0, 1.0)),)


class ModelMergeBlocks(_Merge):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",),
                             "input": RATIO, "middle": RATIO, "out": RATIO}}

    def merge(self, model1, model2, **ratios):
        # Each input is the ratio of the weights whose ComfyUI name starts with the input's name.
        return (merge.merged(model1, model2, merge.by_block(ratios)),)


def _blocks(*names: str) -> dict:
    return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), **{name: RATIO for name in names}}}


def _numbered(stem: str, count: int, end: str = ".") -> list[str]:
    return [f"{stem}.{i}{end}" for i in range(count)]


class _ModelSpecific(ModelMergeBlocks):
    CATEGORY = "advanced/model_merging/model_specific"
    RELATIVE_PYTHON_MODULE = SPECIFIC_MODULE
    BLOCKS: tuple[str, ...] = ()

    @classmethod
    def INPUT_TYPES(cls):
        return _blocks(*cls.BLOCKS)


class ModelMergeSD1(_ModelSpecific):
    BLOCKS = ("time_embed.", "label_emb.", *_numbered("input_blocks", 12), *_numbered("middle_block", 3),
              *_numbered("output_blocks", 12), "out.")


class ModelMergeSDXL(_ModelSpecific):
    # ComfyUI names the SDXL blocks without the trailing dot (the nine of each side cannot be confused)
    BLOCKS = ("time_embed.", "label_emb.", *_numbered("input_blocks", 9, ""), *_numbered("middle_block", 3, ""),
              *_numbered("output_blocks", 9, ""), "out.")


class ModelMergeSD3_2B(_ModelSpecific):
    BLOCKS = ("pos_embed.", "x_embedder.", "context_embedder.", "y_embedder.", "t_embedder.",
              *_numbered("joint_blocks", 24), "final_layer.")


class ModelMergeSD35_Large(_ModelSpecific):
    BLOCKS = ("pos_embed.", "x_embedder.", "context_embedder.", "y_embedder.", "t_embedder.",
              *_numbered("joint_blocks", 38), "final_layer.")


class ModelMergeFlux1(_ModelSpecific):
    BLOCKS = ("img_in.", "time_in.", "guidance_in", "vector_in.", "txt_in.", *_numbered("double_blocks", 19),
              *_numbered("single_blocks", 38), "final_layer.")


class _ClipMerge:
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"
    CATEGORY = CATEGORY
    RELATIVE_PYTHON_MODULE = MODULE


class CLIPMergeSimple(_ClipMerge):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "ratio": RATIO}}

    def merge(self, clip1, clip2, ratio):
        return (merge.merged(clip1, clip2, merge.ratio(ratio)),)


class CLIPMergeSubtract(_ClipMerge):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "multiplier": MULTIPLIER}}

    def merge(self, clip1, clip2, multiplier):
        return (merge.merged(clip1, clip2, merge.uniform(-multiplier, multiplier)),)


class CLIPMergeAdd(_ClipMerge):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",)}}

    def merge(self, clip1, clip2):
        return (merge.merged(clip1, clip2, merge.uniform(1.0, 1.0)),)


def write(tensors: dict, filename_prefix: str, metadata: dict, model=None) -> None:
    """`tensors` as `<prefix>_<counter>_.safetensors` in the output folder; with `model`, a checkpoint of it (its
    modelspec metadata first, titled after the file)."""
    directory, filename, counter, _ = save_target("output", filename_prefix)
    if model is not None:
        metadata = {**saving.checkpoint_metadata(model, f"{filename} {counter}"), **metadata}
    save_file(tensors, str(directory / f"{filename}_{counter:05}_.safetensors"), metadata=metadata)


class _Save:
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY
    RELATIVE_PYTHON_MODULE = MODULE


class CheckpointSave(_Save):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "clip": ("CLIP",), "vae": ("VAE",),
                             "filename_prefix": ("STRING", {"default": "checkpoints/ComfyUI"})},
                "hidden": dict(HIDDEN)}

    def save(self, model, clip, vae, filename_prefix, prompt=None, extra_pnginfo=None):
        write(saving.checkpoint_state_dict(model, clip, vae), filename_prefix, prompt_metadata(prompt, extra_pnginfo),
              model)
        return {}


class ModelSave(_Save):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "filename_prefix": ("STRING", {"default": "diffusion_models/ComfyUI"})},
                "hidden": dict(HIDDEN)}

    def save(self, model, filename_prefix, prompt=None, extra_pnginfo=None):
        write(saving.checkpoint_state_dict(model), filename_prefix, prompt_metadata(prompt, extra_pnginfo), model)
        return {}


class CLIPSave(_Save):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "filename_prefix": ("STRING", {"default": "clip/ComfyUI"})},
                "hidden": dict(HIDDEN)}

    def save(self, clip, filename_prefix, prompt=None, extra_pnginfo=None):
        metadata = {"format": "pt", **prompt_metadata(prompt, extra_pnginfo)}
        # one file per text encoder, its name after the prefix (ComfyUI_clip_l_00001_.safetensors)
        for name, tensors in saving.clip_files(clip).items():
            write(tensors, f"{filename_prefix}_{name}", metadata)
        return {}


class VAESave(_Save):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",), "filename_prefix": ("STRING", {"default": "vae/ComfyUI_vae"})},
                "hidden": dict(HIDDEN)}

    def save(self, vae, filename_prefix, prompt=None, extra_pnginfo=None):
        write(saving.vae_state_dict(vae), filename_prefix, prompt_metadata(prompt, extra_pnginfo))
        return {}


NODE_CLASS_MAPPINGS = {
    "ModelMergeSimple": ModelMergeSimple, "ModelMergeBlocks": ModelMergeBlocks,
    "ModelMergeSubtract": ModelMergeSubtract, "ModelMergeAdd": ModelMergeAdd, "CheckpointSave": CheckpointSave,
    "CLIPMergeSimple": CLIPMergeSimple, "CLIPMergeSubtract": CLIPMergeSubtract, "CLIPMergeAdd": CLIPMergeAdd,
    "CLIPSave": CLIPSave, "VAESave": VAESave, "ModelSave": ModelSave,
    "ModelMergeSD1": ModelMergeSD1, "ModelMergeSD2": ModelMergeSD1,  # the SD2 UNet has the same blocks
    "ModelMergeSDXL": ModelMergeSDXL, "ModelMergeSD3_2B": ModelMergeSD3_2B, "ModelMergeFlux1": ModelMergeFlux1,
    "ModelMergeSD35_Large": ModelMergeSD35_Large,
}
NODE_DISPLAY_NAME_MAPPINGS = {"CheckpointSave": "Save Checkpoint"}
