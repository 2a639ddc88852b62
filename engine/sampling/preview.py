"""Cheap previews of the latent being sampled: a fixed linear map from latent channels to RGB."""
from __future__ import annotations

import torch
from PIL import Image

# Per latent space: (channels x 3 latent-to-RGB factors, RGB bias), published with the latent formats.
LATENT_RGB = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177]], None),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
              [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
    "flux": ([[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433],
              [-0.0174, 0.0160, 0.0617], [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115],
              [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259], [-0.0245, 0.0250, 0.1180],
              [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
              [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499],
              [-0.1262, -0.0982, -0.0778]], [-0.0329, -0.0718, -0.0851]),
}
# Model family -> its latent space's factors (Z-Image samples in the FLUX VAE's 16-channel space).
_SPACE = {"sdxl": "sdxl", "sdxl_refiner": "sdxl", "z_image": "flux"}


def latent_to_image(x0: torch.Tensor, family: str) -> Image.Image:
    """The first latent of a batch (model space) as a small RGB preview image."""
    factors, bias = LATENT_RGB[_SPACE.get(family, "sd")]
    weight = torch.tensor(factors, dtype=torch.float32, device=x0.device).t()
    rgb = torch.nn.functional.linear(x0[:1].float().movedim(1, -1),
                                     weight, None if bias is None else torch.tensor(bias, device=x0.device))[0]
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu().numpy()
    return Image.fromarray(pixels)
