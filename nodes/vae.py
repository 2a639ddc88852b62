"""VAE nodes: latents to images and back, tiled variants, and the inpainting encode."""
from __future__ import annotations

import math

import torch


def crop_to_multiple(pixels: torch.Tensor, multiple: int) -> torch.Tensor:
    """Centre-crop [B, H, W, C] images so both sides are multiples of the VAE's downscale."""
    h, w = (pixels.shape[1] // multiple) * multiple, (pixels.shape[2] // multiple) * multiple
    if (h, w) == tuple(pixels.shape[1:3]):
        return pixels
    dy, dx = (pixels.shape[1] % multiple) // 2, (pixels.shape[2] % multiple) // 2
    return pixels[:, dy:dy + h, dx:dx + w, :]


def grey_out_masked(pixels: torch.Tensor, mask: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels, mask) for inpainting encodes: the mask resized to the image, both centre-cropped to multiples of
    ``multiple``, and a copy of the pixels set to grey (0.5) where the mask rounds to 1, so the encoded image
    does not show what is to be repainted. The mask comes back as [B, 1, H, W]."""
    mask = torch.nn.functional.interpolate(mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]),
                                           size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")
    cropped = crop_to_multiple(pixels, multiple)
    dy, dx = (pixels.shape[1] % multiple) // 2, (pixels.shape[2] % multiple) // 2
    mask = mask[:, :, dy:dy + cropped.shape[1], dx:dx + cropped.shape[2]]
    keep = (1.0 - mask.round()).squeeze(1).unsqueeze(-1)
    pixels = cropped.clone()
    pixels[..., :3] = (pixels[..., :3] - 0.5) * keep + 0.5
    return pixels, mask


class VAEDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                             "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded image.",)
    FUNCTION = "decode"
    CATEGORY = "latent"
    DESCRIPTION = "Decodes latent images back into pixel space images."

    def decode(self, vae, samples):
        return (vae.decode(samples["samples"]),)


class VAEEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent"

    def encode(self, vae, pixels):
        return ({"samples": vae.encode(crop_to_multiple(pixels, vae.downscale))},)


def _tile_inputs(step: int):
    return {
        "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": step}),
        "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
        "temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4,
                                  "tooltip": "Only used for video VAEs: Amount of frames to {} at a time."}),
        "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4,
                                     "tooltip": "Only used for video VAEs: Amount of frames to overlap."}),
    }


class VAEDecodeTiled:
    @classmethod
    def INPUT_TYPES(cls):
        inputs = _tile_inputs(32)
        inputs["temporal_size"][1]["tooltip"] = inputs["temporal_size"][1]["tooltip"].format("decode")
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",), **inputs}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = "_for_testing"

    def decode(self, vae, samples, tile_size, overlap=64, temporal_size=64, temporal_overlap=8):
        if tile_size < overlap * 4:
            overlap = tile_size // 4
        scale = vae.downscale
        return (vae.decode_tiled(samples["samples"], tile=tile_size // scale, overlap=overlap // scale),)


class VAEEncodeTiled:
    @classmethod
    def INPUT_TYPES(cls):
        inputs = _tile_inputs(64)
        inputs["temporal_size"][1]["tooltip"] = inputs["temporal_size"][1]["tooltip"].format("encode")
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), **inputs}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "_for_testing"

    def encode(self, vae, pixels, tile_size, overlap, temporal_size=64, temporal_overlap=8):
        return ({"samples": vae.encode_tiled(crop_to_multiple(pixels, vae.downscale), tile=tile_size,
                                             overlap=overlap)},)


class VAEEncodeForInpaint:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), "mask": ("MASK",),
                             "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent/inpaint"

    def encode(self, vae, pixels, mask, grow_mask_by=6):
        pixels, mask = grey_out_masked(pixels, mask, vae.downscale)
        h, w = pixels.shape[1:3]
        if grow_mask_by == 0:
            grown = mask
        else:
            # Grow the mask a little so the seam falls inside the regenerated area in latent space.
            kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by), device=mask.device, dtype=mask.dtype)
            grown = torch.clamp(torch.nn.functional.conv2d(mask.round(), kernel,
                                                           padding=math.ceil((grow_mask_by - 1) / 2)), 0, 1)
        return ({"samples": vae.encode(pixels), "noise_mask": grown[:, :, :h, :w].round()},)


NODE_CLASS_MAPPINGS = {
    "VAEDecode": VAEDecode, "VAEEncode": VAEEncode, "VAEDecodeTiled": VAEDecodeTiled,
    "VAEEncodeTiled": VAEEncodeTiled, "VAEEncodeForInpaint": VAEEncodeForInpaint,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VAEDecode": "VAE Decode", "VAEEncode": "VAE Encode", "VAEDecodeTiled": "VAE Decode (Tiled)",
    "VAEEncodeTiled": "VAE Encode (Tiled)", "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
}
