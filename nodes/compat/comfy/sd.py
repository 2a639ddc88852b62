"""`comfy.sd`: checkpoints and LoRAs loaded through comfyd's loaders, for custom nodes that load models by path;
`CLIP` and `VAE` are the classes of comfyd's CLIP and VAE values (for isinstance checks)."""
from __future__ import annotations

from engine.models.clip import TextEncoder as CLIP  # noqa: F401 (re-exported)
from engine.models.lora import LoraPatch, apply_lora
from engine.models.vae import VAE  # noqa: F401 (re-exported)
from nodes.clip_vision import load_clip_vision_path
from nodes.loaders import load_checkpoint_path


def load_checkpoint_guess_config(ckpt_path, output_vae=True, output_clip=True, output_clipvision=False,
                                 embedding_directory=None, output_model=True, model_options=None,
                                 te_model_options=None):
    """(MODEL, CLIP, VAE, CLIP_VISION) of a checkpoint file, each None when not asked for (or, for CLIP / VAE /
    CLIP_VISION, not in the file). The family is detected from the weights; embeddings come from the embeddings
    folders."""
    model, clip, vae = load_checkpoint_path(ckpt_path, clip=output_clip, vae=output_vae)
    clip_vision = load_clip_vision_path(ckpt_path, embedded=True) if output_clipvision else None
    return (model if output_model else None), clip, vae, clip_vision


def load_lora_for_models(model, clip, lora: dict, strength_model: float, strength_clip: float):
    """(MODEL, CLIP) clones patched with the LoRA state dict `lora` (as comfy.utils.load_torch_file reads it);
    either may be None."""
    return apply_lora(model, clip, LoraPatch.from_tensors(lora), strength_model, strength_clip)
