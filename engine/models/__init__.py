"""Stable Diffusion checkpoints: detection (``detect``, torch-free) and loading (``load``, imports torch/diffusers).

Only the light detection API is re-exported here; import loaders from ``engine.models.load``.
"""
from .detect import CheckpointError, ModelSpec, TextEncoderSpec, UNetSpec, VaeSpec, detect

__all__ = ["CheckpointError", "ModelSpec", "TextEncoderSpec", "UNetSpec", "VaeSpec", "detect"]
