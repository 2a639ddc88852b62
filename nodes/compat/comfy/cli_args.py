"""`comfy.cli_args`: ComfyUI's parsed command line, `args`, which packs read for the server's address, folders and
modes. comfyd parses its own flags; `configure(settings)` (run before packs load) copies into `args` those comfyd
has, and every other flag keeps ComfyUI's default (so do --normalvram and --cache-classic, comfyd's defaults)."""
from __future__ import annotations

import argparse
import enum


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


_FLAGS = ("auto_launch", "disable_auto_launch", "cuda_malloc", "disable_cuda_malloc", "force_fp32", "force_fp16",
          "fp32_unet", "fp64_unet", "bf16_unet", "fp16_unet", "fp8_e4m3fn_unet", "fp8_e5m2_unet", "fp8_e8m0fnu_unet",
          "fp16_vae", "fp32_vae", "bf16_vae", "cpu_vae", "fp8_e4m3fn_text_enc", "fp8_e5m2_text_enc", "fp16_text_enc",
          "fp32_text_enc", "bf16_text_enc", "force_channels_last", "disable_ipex_optimize", "supports_fp8_compute",
          "cache_classic", "cache_none", "use_split_cross_attention", "use_quad_cross_attention",
          "use_pytorch_cross_attention", "use_sage_attention", "use_flash_attention", "disable_xformers",
          "force_upcast_attention", "dont_upcast_attention", "gpu_only", "highvram", "normalvram", "lowvram", "novram",
          "cpu", "async_offload", "force_non_blocking", "disable_smart_memory", "deterministic", "mmap_torch_files",
          "disable_mmap", "dont_print_server", "quick_test_for_ci", "windows_standalone_build", "disable_metadata",
          "disable_all_custom_nodes", "disable_api_nodes", "multi_user", "log_stdout",
          "enable_compress_response_body")
_UNSET = ("tls_keyfile", "tls_certfile", "enable_cors_header", "base_directory", "extra_model_paths_config",
          "output_directory", "temp_directory", "input_directory", "user_directory", "cuda_device", "default_device",
          "directml", "oneapi_device_selector", "reserve_vram", "front_end_root")

args = argparse.Namespace(
    **dict.fromkeys(_FLAGS, False), **dict.fromkeys(_UNSET),
    listen="127.0.0.1", port=8188, max_upload_size=100, preview_method=LatentPreviewMethod.NoPreviews,
    preview_size=512, cache_lru=0, default_hashing_function="sha256", fast=set(), whitelist_custom_nodes=[],
    verbose="INFO", front_end_version="comfyanonymous/ComfyUI@latest", comfy_api_base="https://api.comfy.org",
    database_url=None,
)


def configure(settings) -> None:
    """Fill `args` from comfyd's Settings (paths as strings, as argparse gives them to ComfyUI)."""

    def path(value):
        return None if value is None else str(value)

    vars(args).update(
        listen=settings.listen, port=settings.port, cpu=settings.cpu, enable_cors_header=settings.enable_cors_header,
        max_upload_size=settings.max_upload_size_mb, base_directory=path(settings.base_directory),
        extra_model_paths_config=[[str(p) for p in settings.extra_model_paths_config]] or None,
        output_directory=path(settings.output_directory), input_directory=path(settings.input_directory),
        temp_directory=path(settings.temp_directory), user_directory=path(settings.user_directory),
        preview_method=LatentPreviewMethod(settings.preview_method),
        highvram=settings.vram_mode == "high", lowvram=settings.vram_mode == "low",
        cache_lru=settings.cache_lru_size, cache_none=settings.cache_policy == "none",
        multi_user=settings.multi_user, verbose="DEBUG" if settings.verbose else "INFO",
        disable_all_custom_nodes=settings.disable_custom_nodes, front_end_root=path(settings.front_end_root),
        front_end_version=settings.front_end_version or args.front_end_version,
    )
