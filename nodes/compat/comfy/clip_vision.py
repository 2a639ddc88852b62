"""`comfy.clip_vision`: image encoders (CLIP_VISION values) loaded by path, for custom nodes."""
from __future__ import annotations

from engine.models.clip_vision import ClipVision as ClipVisionModel  # noqa: F401 (re-exported)
from nodes.clip_vision import load_clip_vision_path


def load(ckpt_path):
    """The CLIP or SigLIP image encoder in the file at `ckpt_path`."""
    return load_clip_vision_path(ckpt_path)
