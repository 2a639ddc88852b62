"""`comfy.model_patcher`: the MODEL class and the model_options helpers that patch functions use."""
from __future__ import annotations

from engine.models.diffusion import DiffusionModel as ModelPatcher  # noqa: F401 (what MODEL values are)
from engine.models.unet_patches import with_replacement
from engine.sampling.guidance import with_sampler_function


def set_model_options_patch_replace(model_options: dict, patch, name: str, block_name: str, number: int,
                                    transformer_index: int | None = None) -> dict:
    return with_replacement(model_options, patch, name, block_name, number, transformer_index)


def set_model_options_post_cfg_function(model_options: dict, post_cfg_function,
                                        disable_cfg1_optimization: bool = False) -> dict:
    return with_sampler_function(model_options, "sampler_post_cfg_function", post_cfg_function,
                                 disable_cfg1_optimization)


def set_model_options_pre_cfg_function(model_options: dict, pre_cfg_function,
                                       disable_cfg1_optimization: bool = False) -> dict:
    return with_sampler_function(model_options, "sampler_pre_cfg_function", pre_cfg_function,
                                 disable_cfg1_optimization)
