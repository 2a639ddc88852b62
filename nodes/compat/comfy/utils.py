"""`comfy.utils`: progress bars, resizing, tiling, batch and mask fitting, and file loading for custom nodes."""
from __future__ import annotations

import math

import torch
from safetensors.torch import load_file, save_file

from engine import context, tiling
from engine.resize import bislerp, common_upscale, lanczos  # noqa: F401 (re-exported)

PROGRESS_BAR_ENABLED = True


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def _report(value, total, preview, prompt_id=None, node_id=None) -> None:
    """The default hook: progress (and a preview) for the running node on the websocket, and the interrupt check
    ComfyUI's server hook makes."""
    context.check_interrupted()
    ctx = context.current()
    if ctx is not None:
        ctx.progress(value, total, preview, node_id)


# A pack may replace it (usually wrapping the one it finds) to watch or redirect every bar's updates.
PROGRESS_BAR_HOOK = _report


def set_progress_bar_global_hook(function) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar(context.ProgressBar):
    """Reports through the hook set when the bar was made (as ComfyUI's does)."""

    def __init__(self, total: int, node_id: str | None = None):
        super().__init__(total, node_id)
        self.hook = PROGRESS_BAR_HOOK

    def update_absolute(self, value: float, total: float | None = None, preview=None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)


def load_torch_file(path, safe_load: bool = True, device=None, return_metadata: bool = False):
    device = device or torch.device("cpu")
    if str(path).lower().endswith((".safetensors", ".sft")):
        data = load_file(str(path), device=str(device))
    else:
        data = torch.load(path, map_location=device, weights_only=True)
        if isinstance(data, dict) and "state_dict" in data:
            data = data["state_dict"]
    return (data, None) if return_metadata else data


def save_torch_file(sd: dict, ckpt, metadata: dict | None = None) -> None:
    save_file(sd, str(ckpt), metadata=metadata)


def state_dict_prefix_replace(state_dict: dict, replace_prefix: dict, filter_keys: bool = False) -> dict:
    """`state_dict` with keys starting with each `replace_prefix` key renamed to start with its value instead (in
    place), or, with `filter_keys`, a new dict of just the renamed keys."""
    out = {} if filter_keys else state_dict
    for old, new in replace_prefix.items():
        for key in [k for k in state_dict if k.startswith(old)]:
            out[new + key[len(old):]] = state_dict.pop(key)
    return out


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    """`tensor` cut or repeated along `dim` to `batch_size` entries."""
    size = tensor.shape[dim]
    if size < batch_size:
        repeats = [1] * tensor.ndim
        repeats[dim] = math.ceil(batch_size / size)
        tensor = tensor.repeat(repeats)
    return tensor.narrow(dim, 0, batch_size) if tensor.shape[dim] != batch_size else tensor


def reshape_mask(input_mask: torch.Tensor, output_shape) -> torch.Tensor:
    """A mask resized to `output_shape` (B, C, *spatial; 1 to 3 spatial dimensions), its channels repeated."""
    spatial = len(output_shape) - 2
    if spatial == 2:
        input_mask = input_mask.reshape((-1, 1) + tuple(input_mask.shape[-2:]))
    elif spatial == 3 and input_mask.ndim < 5:
        input_mask = input_mask.reshape((1, 1, -1) + tuple(input_mask.shape[-2:]))
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
    mask = torch.nn.functional.interpolate(input_mask, size=tuple(output_shape[2:]), mode=mode)
    if mask.shape[1] < output_shape[1]:
        mask = mask.repeat((1, output_shape[1]) + (1,) * spatial)[:, :output_shape[1]]
    return repeat_to_batch_size(mask, output_shape[0])


def get_tiled_scale_steps(width: int, height: int, tile_x: int, tile_y: int, overlap: int) -> int:
    def along(size, tile):
        return 1 if size <= tile else math.ceil((size - overlap) / (tile - overlap))
    return along(height, tile_y) * along(width, tile_x)


def tiled_scale(samples, function, tile_x: int = 64, tile_y: int = 64, overlap: int = 8, upscale_amount: float = 4,
                out_channels: int = 3, output_device="cpu", pbar=None) -> torch.Tensor:
    """`function` applied to (N, C, H, W) `samples` over overlapping tiles, its outputs `upscale_amount` times the
    size of its inputs and blended where tiles overlap; `pbar` advances once per tile."""
    return tiling.tiled_scale(samples, function, tile=(tile_y, tile_x), overlap=overlap, scale=upscale_amount,
                              out_channels=out_channels, output_device=output_device,
                              on_tile=None if pbar is None else lambda: pbar.update(1))


def tiled_scale_multidim(samples, function, tile=(64, 64), overlap: int = 8, upscale_amount: float = 4,
                         out_channels: int = 3, output_device="cpu", downscale: bool = False, index_formulas=None,
                         pbar=None) -> torch.Tensor:
    """tiled_scale with ComfyUI's multi-dimensional signature; comfyd tiles two spatial dimensions (images)."""
    if len(tile) != 2 or downscale or index_formulas is not None or isinstance(upscale_amount, (tuple, list)):
        raise NotImplementedError("comfyd tiles 2-D upscales only")
    return tiled_scale(samples, function, tile_x=tile[1], tile_y=tile[0], overlap=overlap,
                       upscale_amount=upscale_amount, out_channels=out_channels, output_device=output_device,
                       pbar=pbar)
