"""Model-based image upscaling (comfy_extras/nodes_upscale_model.py): ESRGAN, RealESRGAN, SwinIR, ... via spandrel."""
from __future__ import annotations

import torch

from engine import context, folders, tiling

from .loaders import cached_model

MODULE = "comfy_extras.nodes_upscale_model"
TILE, OVERLAP, MIN_TILE = 512, 32, 128
# Some SwinIR files were saved from a DataParallel wrapper; ComfyUI drops the prefix when it sees this key.
DATA_PARALLEL_MARKER = "module.layers.0.residual_group.blocks.0.norm1.weight"


class UpscaleModelError(Exception):
    """A file in models/upscale_models that is not a single-image upscale model spandrel knows."""


def read_state_dict(path) -> dict[str, torch.Tensor]:
    from engine.models.load import open_checkpoint

    with open_checkpoint(path, torch.device("cpu")) as file:
        state = {key: file.read(key) for key in file.shapes}
    if DATA_PARALLEL_MARKER in state:
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_upscale_model(path, name: str):
    """The spandrel ImageModelDescriptor for an upscale model file, in eval mode on the CPU."""
    import spandrel

    from engine.models.detect import CheckpointError

    try:
        state = read_state_dict(path)
    except CheckpointError as exc:
        raise UpscaleModelError(f"{name}: cannot read the upscale model file ({exc})") from exc
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state).eval()
    except spandrel.UnsupportedModelError:
        raise UpscaleModelError(f"{name}: not an upscale model architecture spandrel supports") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscaleModelError(f"{name}: an upscale model must take a single image (this is a "
                                f"{type(descriptor).__name__})")
    return descriptor


def upscale_image(descriptor, image: torch.Tensor, device: torch.device, offload_device: torch.device) -> torch.Tensor:
    """(B, H, W, C) image in [0, 1] through the model, in 512-pixel tiles (halved on out-of-memory down to 128),
    one progress step per tile; the model visits `device` and goes back to `offload_device`."""
    pixels = image.movedim(-1, 1).to(device)
    batch, _, height, width = pixels.shape

    def run(part: torch.Tensor) -> torch.Tensor:
        context.check_interrupted()
        return descriptor(part)

    descriptor.to(device)
    try:
        tile = TILE
        while True:
            bar = context.ProgressBar(batch * tiling.tile_count(width, height, tile, OVERLAP))
            try:
                result = tiling.tiled_scale(pixels, run, tile=tile, overlap=OVERLAP, scale=descriptor.scale,
                                            out_channels=descriptor.output_channels, output_device=offload_device,
                                            on_tile=bar.update)
                break
            except torch.cuda.OutOfMemoryError:
                tile //= 2
                if tile < MIN_TILE:
                    raise
    finally:
        descriptor.to(offload_device)
    return torch.clamp(result.movedim(1, -1), 0.0, 1.0)


class UpscaleModelLoader:
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": ("COMBO", {"multiselect": False,
                                                      "options": folders.get_filename_list("upscale_models")})}}

    RETURN_TYPES = ("UPSCALE_MODEL",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "load_model"
    CATEGORY = "loaders"
    RELATIVE_PYTHON_MODULE = MODULE

    def load_model(self, model_name):
        return (cached_model("upscale_models", model_name, lambda path, manager: load_upscale_model(path, model_name)),)


class ImageUpscaleWithModel:
    API_NODE = False

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"upscale_model": ("UPSCALE_MODEL", {}), "image": ("IMAGE", {})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"
    RELATIVE_PYTHON_MODULE = MODULE

    def upscale(self, upscale_model, image):
        manager = context.model_manager()
        return (upscale_image(upscale_model, image, manager.device, manager.offload_device),)


NODE_CLASS_MAPPINGS = {"UpscaleModelLoader": UpscaleModelLoader, "ImageUpscaleWithModel": ImageUpscaleWithModel}
NODE_DISPLAY_NAME_MAPPINGS = {"UpscaleModelLoader": "Load Upscale Model",
                              "ImageUpscaleWithModel": "Upscale Image (using Model)"}
