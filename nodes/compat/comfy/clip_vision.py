"""`comfy.clip_vision`: image encoders (CLIP_VISION values) loaded by path, for custom nodes; `clip_preprocess`
(images to the encoder's normalised pixels) and `Output` (the bag of embeddings packs collect encodings in)."""
from __future__ import annotations

from engine.models import clip_vision
from engine.models.clip_vision import ClipVision as ClipVisionModel  # noqa: F401 (re-exported)
from nodes.clip_vision import load_clip_vision_path


class Output:
    """Embeddings by name, read and written both as items and as attributes (`out["image_embeds"]`)."""

    def __getitem__(self, key: str):
        return getattr(self, key)

    def __setitem__(self, key: str, value) -> None:
        setattr(self, key, value)


def clip_preprocess(image, size: int = 224, mean=clip_vision.CLIP_MEAN, std=clip_vision.CLIP_STD, crop: bool = True):
    """[B, H, W, C] images in 0..1 -> [B, 3, size, size] pixels normalised by `mean` / `std` (CLIP's by default),
    the short side scaled to `size` and the centre cut out (squashed instead without `crop`)."""
    return clip_vision.clip_preprocess(image, size, crop=crop, mean=mean, std=std)


def load(ckpt_path):
    """The CLIP or SigLIP image encoder in the file at `ckpt_path`."""
    return load_clip_vision_path(ckpt_path)
