"""VAE: a diffusers AutoencoderKL behind ComfyUI's encode/decode contract (IMAGE <-> raw latent)."""
from __future__ import annotations

import contextlib

import torch

from ..tiling import tiled_scale


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

    def _check_channels(self, latent: torch.Tensor) -> None:
        if latent.shape[1] != self.latent_channels:
            source = f" ({self.name})" if self.name else ""
            raise ValueError(f"this latent has {latent.shape[1]} channels but the VAE{source} decodes "
                             f"{self.latent_channels}-channel latents: use the VAE of the model family that made it")

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, batch: int = 1) -> torch.Tensor:
        self._check_channels(latent)

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
        """Decode in overlapping latent tiles blended at the seams: bounded memory for large images."""
        return tiled_scale(latent, lambda t: self.decode(t).movedim(-1, 1), tile=tile, overlap=overlap,
                           scale=self.downscale, out_channels=3, output_device="cpu").movedim(1, -1)

    @torch.no_grad()
    def encode_tiled(self, pixels: torch.Tensor, tile: int = 512, overlap: int = 64) -> torch.Tensor:
        images = pixels[..., :3].movedim(-1, 1)
        return tiled_scale(images, lambda t: self.encode(t.movedim(1, -1)), tile=tile, overlap=overlap,
                           scale=1 / self.downscale, out_channels=self.latent_channels, output_device="cpu")


class TinyVAE(VAE):
    """A TAESD encoder + decoder pair as VAE (VAELoader's "taesd", "taesdxl", ...): fast and approximate. TAESD works
    on normalised latents, so raw latents go in and out through the full VAE's scale and shift."""

    def __init__(self, encoder, decoder, scale: float, shift: float, *, manager=None, name: str = ""):
        super().__init__(torch.nn.ModuleDict({"encoder": encoder, "decoder": decoder}), manager=manager, name=name)
        self.scale, self.shift = scale, shift

    @property
    def downscale(self) -> int:
        return 8

    @property
    def latent_channels(self) -> int:
        return self.autoencoder["decoder"].layers[0].in_channels

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, batch: int = 1) -> torch.Tensor:
        self._check_channels(latent)
        decoder = self.autoencoder["decoder"]  # returns -1..1
        return self._batched(latent, batch, lambda part: torch.clamp(
            (decoder((part - self.shift) * self.scale).float() + 1.0) / 2.0, 0.0, 1.0)).movedim(1, -1)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, batch: int = 1) -> torch.Tensor:
        encoder = self.autoencoder["encoder"]  # takes -1..1
        images = pixels[..., :3].movedim(-1, 1) * 2.0 - 1.0
        return self._batched(images, batch, lambda part: encoder(part) / self.scale + self.shift)


class PixelSpaceVAE(VAE):
    """VAELoader's "pixel_space", for models that sample pixels: the latent is the image itself, in -1..1."""

    def __init__(self):
        super().__init__(torch.nn.Module(), name="pixel_space")

    @property
    def downscale(self) -> int:
        return 1

    @property
    def latent_channels(self) -> int:
        return 3

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, batch: int = 1) -> torch.Tensor:
        self._check_channels(latent)
        return torch.clamp((latent.float().cpu() + 1.0) / 2.0, 0.0, 1.0).movedim(1, -1)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, batch: int = 1) -> torch.Tensor:
        return pixels[..., :3].movedim(-1, 1).float().cpu() * 2.0 - 1.0
