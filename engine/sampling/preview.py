"""Previews of the latent being sampled: a fixed linear map from latent channels to RGB (latent2rgb), or a TAESD
decoder from models/vae_approx when one fits the model's latent space (ComfyUI's taesd; auto prefers it)."""
from __future__ import annotations

import logging

import torch
from PIL import Image

log = logging.getLogger("comfyd.sampling")

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
    "sd3": ([[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458],
             [0.0856, 0.0339, 0.0902], [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309],
             [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358], [-0.0194, 0.0020, 0.0669],
             [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
             [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293],
             [-0.1448, -0.1463, -0.1189]], [0.2394, 0.2135, 0.1925]),
}
# Model family -> its latent space's factors (Z-Image samples in the FLUX VAE's 16-channel space).
_SPACE = {"sdxl": "sdxl", "sdxl_refiner": "sdxl", "z_image": "flux", "flux": "flux", "sd3": "sd3"}


def latent_space(family: str) -> str:
    return _SPACE.get(family, "sd")


def _to_image(rgb: torch.Tensor) -> Image.Image:
    """[H, W, 3] in -1..1 -> RGB image."""
    return Image.fromarray(((rgb.float() + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu().numpy())


def guarded(to_image):
    """`to_image` answering None instead of raising: a preview is a nicety and must never fail the prompt. After
    a failure (logged once) it makes no more previews."""
    failed = False

    def preview(x0):
        nonlocal failed
        if failed:
            return None
        try:
            return to_image(x0)
        except Exception:
            failed = True
            log.warning("live preview failed; no more previews in this run", exc_info=True)
            return None

    return preview


def previewer(method: str, family: str, manager=None):
    """`x0 -> preview image` for a sampling run, or None when `method` is "none". taesd / auto use the TAESD
    decoder of the model's latent space when models/vae_approx has one, else latent2rgb (as ComfyUI falls back)."""
    if method == "none":
        return None
    if method in ("taesd", "auto") and manager is not None:
        decoder = _taesd_decoder(latent_space(family), manager)
        if decoder is not None:
            return lambda x0: taesd_to_image(x0, decoder)
    return lambda x0: latent_to_image(x0, family)


def _taesd_decoder(space: str, manager):
    from engine import folders
    from engine.models.taesd import find_decoder, load_decoder

    name = find_decoder(space, folders.get_filename_list("vae_approx"))
    if name is None:
        return None
    path = folders.get_full_path("vae_approx", name)
    return manager.cached("preview_decoders", path, lambda: load_decoder(path, manager.device, manager.vae_dtype()))


@torch.no_grad()
def taesd_to_image(x0: torch.Tensor, decoder) -> Image.Image:
    """The first latent of a batch (model space, which is what TAESD decoders take) decoded at full size."""
    parameter = next(decoder.parameters())
    return _to_image(decoder(x0[:1].to(parameter.device, parameter.dtype))[0].movedim(0, -1))


def latent_to_image(x0: torch.Tensor, family: str) -> Image.Image:
    """The first latent of a batch (model space) as a small RGB preview image."""
    factors, bias = LATENT_RGB[latent_space(family)]
    weight = torch.tensor(factors, dtype=torch.float32, device=x0.device).t()
    return _to_image(torch.nn.functional.linear(
        x0[:1].float().movedim(1, -1), weight, None if bias is None else torch.tensor(bias, device=x0.device))[0])
