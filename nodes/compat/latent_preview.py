"""`latent_preview`: live previews of sampling for custom nodes. `prepare_callback(model, steps)` makes the sampler
callback that moves the node's progress bar with a preview from `get_previewer` (looked up when called, so a pack
that replaces it, e.g. to preview a whole batch, changes what nodes.common_ksampler shows). comfyd's previewers
know latent spaces by model family: where ComfyUI passes a LatentFormat, `latent_format` here is the MODEL's
family ("sd", "sdxl", "flux", ...). Packs that build their own previewers use `TAESDPreviewerImpl(TAESD(...))`,
`Latent2RGBPreviewer(factors, bias)` and `preview_to_image`."""
from __future__ import annotations

import torch
from PIL import Image

from engine import context
from engine.sampling.preview import guarded, previewer

from .comfy import utils
from .comfy.cli_args import args
from .comfy.taesd.taesd import TAESD  # noqa: F401  (packs import it from here, as from ComfyUI's module)

MAX_PREVIEW_RESOLUTION = args.preview_size


class LatentPreviewer:
    def decode_latent_to_preview(self, x0):
        """The first latent of the batch `x0` as a PIL image."""
        raise NotImplementedError

    def decode_latent_to_preview_image(self, preview_format, x0):
        image = self.decode_latent_to_preview(x0)
        return ("JPEG", image, MAX_PREVIEW_RESOLUTION) if image is not None else None


def preview_to_image(latent_image: torch.Tensor) -> Image.Image:
    """[H, W, 3] in -1..1 -> RGB image."""
    return Image.fromarray(((latent_image.float() + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu().numpy())


class TAESDPreviewerImpl(LatentPreviewer):
    def __init__(self, taesd: TAESD):
        self.taesd = taesd

    def decode_latent_to_preview(self, x0):
        return preview_to_image(self.taesd.decode(x0[:1])[0].movedim(0, 2))


class Latent2RGBPreviewer(LatentPreviewer):
    """A fixed linear map from latent channels to RGB (`latent_rgb_factors`: channels x 3)."""

    def __init__(self, latent_rgb_factors, latent_rgb_factors_bias=None):
        self.latent_rgb_factors = torch.tensor(latent_rgb_factors).t()
        self.latent_rgb_factors_bias = None if latent_rgb_factors_bias is None else torch.tensor(
            latent_rgb_factors_bias)

    def decode_latent_to_preview(self, x0):
        # video latents [B, C, T, H, W] preview their first frame
        latent = x0[0, :, 0] if x0.ndim == 5 else x0[0]
        bias = self.latent_rgb_factors_bias
        rgb = torch.nn.functional.linear(latent.float().movedim(0, -1), self.latent_rgb_factors.to(latent.device),
                                         None if bias is None else bias.to(latent.device))
        return preview_to_image(rgb)


class _EnginePreviewer(LatentPreviewer):
    def __init__(self, to_image):
        self.to_image = guarded(to_image)  # a failing preview gives None: it never fails the prompt

    def decode_latent_to_preview(self, x0):
        return self.to_image(x0)


def get_previewer(device, latent_format) -> LatentPreviewer | None:
    """The previewer of the running prompt's preview method (latent2rgb or TAESD), None for no previews."""
    ctx = context.current()
    method = ctx.preview_method if ctx is not None else args.preview_method.value
    to_image = previewer(method, latent_format, context.model_manager())
    return None if to_image is None else _EnginePreviewer(to_image)


def prepare_callback(model, steps, x0_output_dict=None):
    """callback(step, x0, x, total_steps) for comfy.sample: progress with a preview of x0 at each step (and x0 kept
    in `x0_output_dict["x0"]`)."""
    preview = get_previewer(model.manager.load_device if model.manager else None, model.family)
    bar = utils.ProgressBar(steps)

    def callback(step, x0, x, total_steps):
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        image = preview.decode_latent_to_preview_image("JPEG", x0) if preview is not None else None
        bar.update_absolute(step + 1, total_steps, image)

    return callback
