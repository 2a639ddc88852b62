"""Cheap previews of the latent being sampled: a fixed linear map from latent channels to RGB."""
from __future__ import annotations

import torch
from PIL import Image

# Per family: (4 x 3 latent-to-RGB factors, RGB bias), published with the latent formats.
LATENT_RGB = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177]], None),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
              [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
}


def latent_to_image(x0: torch.Tensor, family: str) -> Image.Image:
    """The first latent of a batch (model space) as a small RGB preview image."""
    factors, bias = LATENT_RGB["sdxl" if family.startswith("sdxl") else "sd"]
    weight = torch.tensor(factors, dtype=torch.float32, device=x0.device).t()
    rgb = torch.nn.functional.linear(x0[:1].float().movedim(1, -1),
                                     weight, None if bias is None else torch.tensor(bias, device=x0.device))[0]
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu().numpy()
    return Image.fromarray(pixels)
