"""`comfy.patcher_extension`: the names of the callback and wrapper points on a MODEL, and the helpers that file
wrappers into transformer_options the way ComfyUI lays them out (`{"wrappers": {type: {key: [fn, ...]}}}`)."""
from __future__ import annotations


class CallbacksMP:
    ON_CLONE = "on_clone"
    ON_LOAD = "on_load_after"
    ON_DETACH = "on_detach_after"
    ON_CLEANUP = "on_cleanup"
    ON_PRE_RUN = "on_pre_run"
    ON_PREPARE_STATE = "on_prepare_state"
    ON_APPLY_HOOKS = "on_apply_hooks"
    ON_REGISTER_ALL_HOOK_PATCHES = "on_register_all_hook_patches"
    ON_INJECT_MODEL = "on_inject_model"
    ON_EJECT_MODEL = "on_eject_model"


class WrappersMP:
    OUTER_SAMPLE = "outer_sample"
    PREPARE_SAMPLING = "prepare_sampling"
    SAMPLER_SAMPLE = "sampler_sample"
    PREDICT_NOISE = "predict_noise"
    CALC_COND_BATCH = "calc_cond_batch"
    APPLY_MODEL = "apply_model"
    DIFFUSION_MODEL = "diffusion_model"


def _options(transformer_options: dict, is_model_options: bool) -> dict:
    return transformer_options.setdefault("transformer_options", {}) if is_model_options else transformer_options


def add_wrapper_with_key(wrapper_type: str, key: str, wrapper, transformer_options: dict,
                         is_model_options: bool = False) -> None:
    wrappers = _options(transformer_options, is_model_options).setdefault("wrappers", {})
    wrappers.setdefault(wrapper_type, {}).setdefault(key, []).append(wrapper)


def get_wrappers_with_key(wrapper_type: str, key: str, transformer_options: dict,
                          is_model_options: bool = False) -> list:
    return _options(transformer_options, is_model_options).get("wrappers", {}).get(wrapper_type, {}).get(key, [])
