"""Loader nodes: checkpoints, diffusion models, text encoders and VAEs from the model folders."""
from __future__ import annotations

import os

from engine import context, folders
from engine.models.cast import WEIGHT_DTYPES, narrow_storage
from engine.models.clip import TextEncoder
from engine.models.diffusion import DiffusionModel
from engine.models.vae import PixelSpaceVAE, VAE


def model_path(folder: str, name: str):
    path = folders.get_full_path(folder, name)
    if path is None:
        raise FileNotFoundError(f"{folder}/{name} was not found in any {folder} folder")
    return path


def cached_model(folder: str, name: str, build, *, kind: str | None = None):
    """What `build(path, manager)` makes of models/<folder>/<name>, cached while the file is unchanged; `kind`
    (default: the folder) keeps apart what different builders make of the same file."""
    manager = context.model_manager()
    path = model_path(folder, name)
    return manager.cached(kind or folder, path, lambda: build(path, manager))


def _dit_family(shapes):
    """(load, MODEL class) of the DiT family whose keys ``shapes`` holds, or None for UNet files."""
    from engine.models import flux, sd3, z_image

    families = ((z_image.find_prefix, z_image.load_z_image, z_image.ZImageModel),
                (flux.find_prefix, flux.load_flux, flux.FluxModel), (sd3.find_prefix, sd3.load_sd3, sd3.SD3Model))
    return next(((load, cls) for find, load, cls in families if find(shapes) is not None), None)


def _dit_checkpoint(file, manager, name: str, load, model_class):
    """(MODEL, CLIP or None, VAE) of an all-in-one FLUX / SD3 file."""
    from engine.models.dit_checkpoint import load_companions

    companions = load_companions(file, manager.load_device, {
        "clip": manager.text_dtype(), "t5xxl": manager.bf16_or_fp32(), "vae": manager.vae_dtype()})
    compute = manager.bf16_or_fp32()
    network = narrow_storage(load(file, manager.load_device, compute, keep_fp8=True)[1], compute)
    model = model_class(network, manager=manager, name=name)
    encoders = companions.text_encoders
    if model.family == "flux" and set(encoders) != {"l", "t5xxl"}:
        raise ValueError(f"{name}: a FLUX checkpoint needs its CLIP-L and T5-XXL text encoders; "
                         f"it has {sorted(encoders)}")
    clip = TextEncoder(encoders, model.family, embedding_roots=folders.active().paths("embeddings"),
                       manager=manager) if encoders else None
    return model, clip, VAE(companions.vae, manager=manager, name=name)


def load_checkpoint_path(path, name: str | None = None, *, clip: bool = True, vae: bool = True):
    """(MODEL, CLIP | None, VAE | None) for the checkpoint file at `path`, cached while the file is unchanged."""
    from engine.models.load import load_checkpoint, open_checkpoint

    name = name or os.path.basename(path)

    def build(manager):
        with open_checkpoint(path, manager.load_device) as file:
            family = _dit_family(file.shapes)
            if family is not None:
                return _dit_checkpoint(file, manager, name, *family)
        loaded = load_checkpoint(path, manager.load_device, manager.unet_dtype())
        spec = loaded.spec
        model = DiffusionModel(loaded.unet, spec.family, spec.prediction, spec.latent_scale_factor, zsnr=spec.zsnr,
                               manager=manager, name=name)
        text = TextEncoder({te.name: te.model for te in loaded.clip}, spec.family,
                           embedding_roots=folders.active().paths("embeddings"), manager=manager) \
            if loaded.clip else None
        autoencoder = None
        if loaded.vae is not None:
            if loaded.vae.dtype != manager.vae_dtype():
                loaded.vae.to(manager.vae_dtype())
            autoencoder = VAE(loaded.vae, manager=manager, name=name)
        return model, text, autoencoder

    manager = context.model_manager()
    model, text, autoencoder = manager.cached("checkpoints", path, lambda: build(manager))
    return model.clone(), (text.clone() if text and clip else None), (autoencoder if vae else None)


def load_checkpoint_file(name: str, *, clip: bool = True, vae: bool = True):
    """(MODEL, CLIP | None, VAE | None) for a checkpoint in models/checkpoints."""
    return load_checkpoint_path(model_path("checkpoints", name), name, clip=clip, vae=vae)


class CheckpointLoaderSimple:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folders.get_filename_list("checkpoints"),
                                           {"tooltip": "The name of the checkpoint (model) to load."})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The model used for denoising latents.",
                       "The CLIP model used for encoding text prompts.",
                       "The VAE model used for encoding and decoding images to and from latent space.")
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders"
    DESCRIPTION = "Loads a diffusion model checkpoint, diffusion models are used to denoise latents."

    def load_checkpoint(self, ckpt_name):
        return load_checkpoint_file(ckpt_name)


class CheckpointLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"config_name": (folders.get_filename_list("configs"),),
                             "ckpt_name": (folders.get_filename_list("checkpoints"),)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    CATEGORY = "advanced/loaders"
    DEPRECATED = True

    def load_checkpoint(self, config_name, ckpt_name):
        # The architecture comes from the weights themselves; the YAML config is not needed.
        return load_checkpoint_file(ckpt_name)


class UNETLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": (folders.get_filename_list("diffusion_models"),),
                             "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"
    CATEGORY = "advanced/loaders"

    def load_unet(self, unet_name, weight_dtype="default"):
        from engine.models.load import load_unet_file, open_checkpoint

        def build(path, manager):
            with open_checkpoint(path, manager.load_device) as file:
                family = _dit_family(file.shapes)
                if family is not None:
                    load, model_class = family
                    compute = manager.bf16_or_fp32()
                    _, network = load(file, manager.load_device, compute, keep_fp8=True)
                    return model_class(narrow_storage(network, compute, storage), manager=manager, name=unet_name)
            loaded = load_unet_file(path, manager.load_device, manager.unet_dtype())
            spec = loaded.spec
            if storage is not None:
                narrow_storage(loaded.unet, manager.unet_dtype(), storage)
            return DiffusionModel(loaded.unet, spec.family, spec.prediction, spec.latent_scale_factor,
                                  zsnr=spec.zsnr, manager=manager, name=unet_name)

        # Each storage choice is its own cached model: the same file may be loaded both ways.
        storage = WEIGHT_DTYPES.get(weight_dtype)
        return (cached_model("diffusion_models", unet_name, build, kind=f"diffusion_models/{weight_dtype}").clone(),)


PIXEL_SPACE = "pixel_space"  # VAELoader's pass-through entry, which upstream always lists


class VAELoader:
    @staticmethod
    def vae_list() -> list[str]:
        """The VAE files, the TAESD pairs models/vae_approx completes, and the pixel-space VAE."""
        from engine.models.taesd import vae_names

        return folders.get_filename_list("vae") + vae_names(folders.get_filename_list("vae_approx")) + [PIXEL_SPACE]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae_name": (cls.vae_list(),)}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"
    CATEGORY = "loaders"

    def load_vae(self, vae_name):
        from engine.models.load import load_vae_file
        from engine.models.taesd import LATENT_STATISTICS

        if vae_name == PIXEL_SPACE:
            return (PixelSpaceVAE(),)
        if vae_name in LATENT_STATISTICS and folders.get_full_path("vae", vae_name) is None:
            return (_tiny_vae(vae_name),)
        return (cached_model("vae", vae_name, lambda path, manager: VAE(
            load_vae_file(path, manager.load_device, manager.vae_dtype()), manager=manager, name=vae_name)),)


def _tiny_vae(name: str):
    """VAELoader's "taesd", "taesdxl", ...: the TAESD encoder and decoder from models/vae_approx."""
    from engine.models.taesd import LATENT_STATISTICS, find_part, load_decoder, load_encoder
    from engine.models.vae import TinyVAE

    files = folders.get_filename_list("vae_approx")
    encoder, decoder = find_part(name, "encoder", files), find_part(name, "decoder", files)
    if encoder is None or decoder is None:
        raise FileNotFoundError(f"{name} needs {name}_encoder.* and {name}_decoder.* in models/vae_approx")

    def build(decoder_path, manager):
        device, dtype = manager.load_device, manager.vae_dtype()
        return TinyVAE(load_encoder(model_path("vae_approx", encoder), device, dtype),
                       load_decoder(decoder_path, device, dtype), *LATENT_STATISTICS[name], manager=manager,
                       name=name)

    return cached_model("vae_approx", decoder, build, kind="taesd_vae")


def _qwen_text_encoder(name: str):
    from engine.models.qwen_text import QwenTextEncoder, load_qwen_file

    _, model = cached_model("text_encoders", name, lambda path, manager: load_qwen_file(
        path, manager.load_device, manager.bf16_or_fp32()), kind="qwen_text_encoders")
    return QwenTextEncoder(model, manager=context.model_manager())


# DualCLIPLoader's types: the encoders each needs, by token key.
PAIRS = {"sdxl": {"l": "a CLIP-L", "g": "a CLIP-G"}, "flux": {"l": "a CLIP-L", "t5xxl": "a T5-XXL"}}
# SD3 takes any one, two or all three of these, each at most once.
SD3_ENCODERS = {"l": "CLIP-L", "g": "CLIP-G", "t5xxl": "T5-XXL"}


def _load_text_encoder(path, manager):
    """A CLIP or T5 text-encoder file, told apart by its keys; T5 runs in bf16 where it can (it overflows fp16)."""
    from engine.models.load import load_clip_file
    from engine.models.t5 import is_t5_file, load_t5_file

    if is_t5_file(path):
        return load_t5_file(path, manager.load_device, manager.bf16_or_fp32())
    return load_clip_file(path, manager.load_device, manager.text_dtype())


def text_encoder_files(names: list[str], family: str):
    """The CLIP of the text-encoder files ``names`` (models/text_encoders) for a CLIPLoader-style ``family``."""
    if family == "lumina2":
        return _qwen_text_encoder(names[0])
    manager = context.model_manager()
    models, kinds = {}, []
    for name in names:
        loaded = cached_model("text_encoders", name, _load_text_encoder)
        models[loaded.name] = loaded.model
        kinds.append(loaded.name)
    if family == "sd3":
        if len(models) < len(kinds) or not set(models) <= set(SD3_ENCODERS):
            raise ValueError(f"sd3 takes different text encoders out of {', '.join(SD3_ENCODERS.values())}; "
                             f"got {kinds}")
    elif family == "stable_diffusion":
        family = {"l": "sd1", "h": "sd2", "g": "sdxl_refiner"}.get(next(iter(models)))
        if family is None:
            raise ValueError("stable_diffusion needs a CLIP text encoder; got a T5")
    elif family in PAIRS and set(models) != set(PAIRS[family]):
        raise ValueError(f"{family} needs {' and '.join(PAIRS[family].values())} text encoders; got {sorted(models)}")
    return TextEncoder(models, family, embedding_roots=folders.active().paths("embeddings"), manager=manager)


class CLIPLoader:
    # lumina2: the Qwen3 4B encoder of Z-Image (Lumina 2's own Gemma 2 encoder is not supported).
    TYPES = ["stable_diffusion", "sd3", "lumina2"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (folders.get_filename_list("text_encoders"),),
                             "type": (cls.TYPES,)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = "[Recipes]\n\nstable_diffusion: clip-l\nsd3: t5 xxl/ clip-g / clip-l\nlumina2: qwen_3_4b (Z-Image)"

    def load_clip(self, clip_name, type="stable_diffusion", device="default"):
        return (text_encoder_files([clip_name], type),)


class DualCLIPLoader:
    TYPES = ["sdxl", "sd3", "flux"]

    @classmethod
    def INPUT_TYPES(cls):
        names = folders.get_filename_list("text_encoders")
        return {"required": {"clip_name1": (names,), "clip_name2": (names,), "type": (cls.TYPES,)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = "[Recipes]\n\nsdxl: clip-l, clip-g\nsd3: clip-l, clip-g / clip-l, t5 / clip-g, t5\nflux: clip-l, t5"

    def load_clip(self, clip_name1, clip_name2, type="sdxl", device="default"):
        return (text_encoder_files([clip_name1, clip_name2], type),)


NODE_CLASS_MAPPINGS = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple, "CheckpointLoader": CheckpointLoader,
    "UNETLoader": UNETLoader, "VAELoader": VAELoader, "CLIPLoader": CLIPLoader, "DualCLIPLoader": DualCLIPLoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CheckpointLoaderSimple": "Load Checkpoint", "CheckpointLoader": "Load Checkpoint With Config (DEPRECATED)",
    "UNETLoader": "Load Diffusion Model", "VAELoader": "Load VAE", "CLIPLoader": "Load CLIP",
}
