"""VAE: a diffusers AutoencoderKL behind ComfyUI's encode/decode contract (IMAGE <-> raw latent)."""
from __future__ import annotations

import contextlib

import torch


class VAE:
    """IMAGE is [B, H, W, C] in 0..1; latents are the raw encoder space (the sampler applies the scale factor)."""

    def __init__(self, autoencoder, *, manager=None, name: str = ""):
        self.autoencoder = autoencoder
        self.manager = manager
        self.name = name

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.autoencoder.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.autoencoder.config.latent_channels

    def _running(self):
        return self.manager.running(self) if self.manager else contextlib.nullcontext()

    @property
    def _device_dtype(self):
        parameter = next(self.autoencoder.parameters())
        return parameter.device, parameter.dtype

    def _batched(self, tensor: torch.Tensor, batch: int, fn) -> torch.Tensor:
        """`fn` over slices of `batch` items on the VAE's device and dtype; float32 CPU results, concatenated."""
        device, dtype = self._device_dtype
        with self._running():
            return torch.cat([fn(tensor[i:i + batch].to(device, dtype)).float().cpu()
                              for i in range(0, tensor.shape[0], batch)])

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, batch: int = 1) -> torch.Tensor:
        def run(part):
            image = self.autoencoder.decode(part, return_dict=False)[0].float()
            return torch.clamp((image + 1.0) / 2.0, 0.0, 1.0)

        return self._batched(latent, batch, run).movedim(1, -1)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, batch: int = 1) -> torch.Tensor:
        # The distribution's mode (mean), as ComfyUI encodes: deterministic latents.
        images = pixels[..., :3].movedim(-1, 1) * 2.0 - 1.0
        return self._batched(images, batch, lambda part: self.autoencoder.encode(part, return_dict=False)[0].mode())

    @torch.no_grad()
    def decode_tiled(self, latent: torch.Tensor, tile: int = 64, overlap: int = 16) -> torch.Tensor:
        """Decode in overlapping latent tiles blended linearly: bounded memory for large images."""
        scale = self.downscale
        return _tiled(latent, lambda t: self.decode(t).movedim(-1, 1), tile, overlap, scale, 3).movedim(1, -1)

    @torch.no_grad()
    def encode_tiled(self, pixels: torch.Tensor, tile: int = 512, overlap: int = 64) -> torch.Tensor:
        scale = self.downscale
        images = pixels[..., :3].movedim(-1, 1)
        return _tiled(images, lambda t: self.encode(t.movedim(1, -1)), tile, overlap, 1 / scale, self.latent_channels)


def _tiled(samples: torch.Tensor, fn, tile: int, overlap: int, scale: float, out_channels: int) -> torch.Tensor:
    """Apply `fn` (which rescales space by `scale`) over overlapping tiles, feathering the overlaps."""
    b, _, h, w = samples.shape
    out_h, out_w = round(h * scale), round(w * scale)
    output = torch.zeros((b, out_channels, out_h, out_w))
    weight = torch.zeros((b, 1, out_h, out_w))
    stride = max(1, tile - overlap)
    ys = list(range(0, max(h - overlap, 1), stride))
    xs = list(range(0, max(w - overlap, 1), stride))
    for y in ys:
        for x in xs:
            y0, x0 = min(y, max(h - tile, 0)), min(x, max(w - tile, 0))
            part = fn(samples[:, :, y0:y0 + tile, x0:x0 + tile]).float().cpu()
            ph, pw = part.shape[-2:]
            feather = max(1, round(overlap * scale))
            mask = torch.ones((1, 1, ph, pw))
            for i in range(min(feather, ph // 2, pw // 2)):
                fade = (i + 1) / (feather + 1)
                mask[:, :, i, :] = torch.minimum(mask[:, :, i, :], torch.tensor(fade))
                mask[:, :, ph - 1 - i, :] = torch.minimum(mask[:, :, ph - 1 - i, :], torch.tensor(fade))
                mask[:, :, :, i] = torch.minimum(mask[:, :, :, i], torch.tensor(fade))
                mask[:, :, :, pw - 1 - i] = torch.minimum(mask[:, :, :, pw - 1 - i], torch.tensor(fade))
            oy, ox = round(y0 * scale), round(x0 * scale)
            output[:, :, oy:oy + ph, ox:ox + pw] += part * mask
            weight[:, :, oy:oy + ph, ox:ox + pw] += mask
    return output / weight
