"""Resizing of [B, C, H, W] tensors (images and latents) with ComfyUI's method names and centre crop."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def center_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    old_h, old_w = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos through Pillow on 8-bit images, as ComfyUI does (so results match it)."""
    out = []
    for image in samples:
        array = np.clip(255.0 * image.movedim(0, -1).cpu().float().numpy(), 0, 255).astype(np.uint8)
        resized = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).resize(
            (width, height), resample=Image.Resampling.LANCZOS)
        tensor = torch.from_numpy(np.array(resized).astype(np.float32) / 255.0)
        out.append(tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows of a and b (N x C), magnitudes interpolated linearly."""
    a_norm, b_norm = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    a_unit = torch.where(a_norm == 0, torch.zeros_like(a), a / a_norm)
    b_unit = torch.where(b_norm == 0, torch.zeros_like(b), b / b_norm)
    dot = (a_unit * b_unit).sum(-1)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    tt = t.squeeze(1)
    out = (torch.sin((1.0 - tt) * omega) / sin_omega).unsqueeze(1) * a_unit \
        + (torch.sin(tt * omega) / sin_omega).unsqueeze(1) * b_unit
    out = out * (a_norm * (1.0 - t) + b_norm * t)
    # Nearly parallel: keep a; nearly opposite: plain lerp.
    out[dot > 1 - 1e-5] = a[dot > 1 - 1e-5]
    opposite = dot < 1e-5 - 1
    out[opposite] = (a * (1.0 - t) + b * t)[opposite]
    return out


def _bilinear_taps(old: int, new: int, device):
    """For each output position along one axis: (fraction, left index, right index) as bilinear sampling picks."""
    coords = torch.nn.functional.interpolate(
        torch.arange(old, dtype=torch.float32, device=device).reshape(1, 1, 1, -1), size=(1, new), mode="bilinear")
    fraction = coords - coords.floor()
    right = torch.arange(old, dtype=torch.float32, device=device).reshape(1, 1, 1, -1) + 1
    right[..., -1] -= 1
    right = torch.nn.functional.interpolate(right, size=(1, new), mode="bilinear")
    return fraction, coords.to(torch.int64), right.to(torch.int64)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resampling that slerps channel vectors (good for latents): width pass, then height pass."""
    dtype = samples.dtype
    x = samples.float()
    for axis_len_new, transpose in ((width, False), (height, True)):
        if transpose:
            x = x.transpose(-1, -2)
        n, c, h, w = x.shape
        fraction, left, right = _bilinear_taps(w, axis_len_new, x.device)
        first = x.gather(-1, left.expand(n, c, h, -1)).movedim(1, -1).reshape(-1, c)
        second = x.gather(-1, right.expand(n, c, h, -1)).movedim(1, -1).reshape(-1, c)
        t = fraction.expand(n, 1, h, -1).movedim(1, -1).reshape(-1, 1)
        x = _slerp(first, second, t).reshape(n, h, axis_len_new, c).movedim(-1, 1)
        if transpose:
            x = x.transpose(-1, -2)
    # contiguous, as ComfyUI's: noise drawn with randn_like fills in memory order (LCM-upscale sampling does)
    return x.to(dtype).contiguous()


def common_upscale(samples: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    if crop == "center":
        samples = center_crop_to_aspect(samples, width, height)
    if method == "bislerp":
        return bislerp(samples, width, height)
    if method == "lanczos":
        return lanczos(samples, width, height)
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=method)
