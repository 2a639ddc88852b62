"""FreeU (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net"): on the up side of an SD UNet, amplify the
backbone features and damp the low frequencies of the skip features they are joined with. ComfyUI applies it as an
output_block_patch to the output blocks whose width is 4x (b1, s1) or 2x (b2, s2) the UNet's base width."""
from __future__ import annotations

import torch


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """`x` with the (2 * threshold)^2 lowest spatial frequencies multiplied by `scale` (computed in float32)."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    mask = torch.ones(freq.shape, device=x.device)
    row, col = freq.shape[-2] // 2, freq.shape[-1] // 2
    mask[..., row - threshold:row + threshold, col - threshold:col + threshold] = scale
    filtered = torch.fft.ifftn(torch.fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return filtered.to(x.dtype)


def backbone_factor(h: torch.Tensor, b: float, structure_aware: bool) -> torch.Tensor | float:
    """What the first half of h's channels is multiplied by: `b` (FreeU), or with FreeU v2 1 + (b - 1) times the
    channel mean normalised to 0..1 per image, so the amplification follows the structure."""
    if not structure_aware:
        return b
    mean = h.mean(1).unsqueeze(1)
    flat = mean.view(mean.shape[0], -1)
    low = flat.min(dim=-1, keepdim=True)[0].unsqueeze(2).unsqueeze(3)
    high = flat.max(dim=-1, keepdim=True)[0].unsqueeze(2).unsqueeze(3)
    return (b - 1) * ((mean - low) / (high - low)) + 1


def output_block_patch(model_channels: int, b1: float, b2: float, s1: float, s2: float, structure_aware: bool):
    """The output_block_patch of FreeU (structure_aware: FreeU v2)."""
    scales = {model_channels * 4: (b1, s1), model_channels * 2: (b2, s2)}

    def patch(h, hsp, transformer_options):
        scale = scales.get(int(h.shape[1]))
        if scale is None:
            return h, hsp
        half = h.shape[1] // 2
        h = torch.cat([h[:, :half] * backbone_factor(h, scale[0], structure_aware), h[:, half:]], dim=1)
        # the FFT may be missing on some accelerators: the filter then runs on the CPU
        try:
            hsp = fourier_filter(hsp, 1, scale[1])
        except RuntimeError:
            hsp = fourier_filter(hsp.cpu(), 1, scale[1]).to(hsp.device)
        return h, hsp

    return patch
