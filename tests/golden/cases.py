"""Parity cases: small ComfyUI API-format graphs run on upstream ComfyUI (golden images) and on comfyd.

Every case uses the seeded random-weight SD1.5 checkpoint written by shared/tools/make_checkpoint.py with
CHECKPOINT_ARGS, and (for img2img) the committed INPUT_IMAGE. Each builder returns a fresh prompt whose only
output node is a SaveImage with id OUTPUT_NODE; its images are the case's golden files `<case>_<i>.png`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

CHECKPOINT = "tiny-sd15.safetensors"
CHECKPOINT_ARGS = ("--seed", "0", "--profile", "tiny")
INPUT_IMAGE = Path(__file__).with_name("input_64.png")
GOLDEN_DIR = Path(__file__).with_name("sd15")
OUTPUT_NODE = "9"

POSITIVE = "a photo of a cat sitting on a red sofa"
NEGATIVE = "blurry, low quality"
LONG_PROMPT = ", ".join(["a very detailed oil painting of a lighthouse on a rocky coast at sunset"] * 8)


def _ksampler(latent, *, seed, steps=3, cfg=7.0, sampler="euler", scheduler="normal", denoise=1.0):
    return {"class_type": "KSampler", "inputs": {
        "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
        "denoise": denoise, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": latent}}


def _graph(sampler_nodes: dict, samples, *, latent=None, positive=POSITIVE, negative=NEGATIVE, clip=("4", 1),
           extra: dict | None = None) -> dict:
    """Checkpoint, two text encodes, the given sampling nodes, decode and save (node "9")."""
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": list(clip)}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": list(clip)}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": list(samples), "vae": ["4", 2]}},
        OUTPUT_NODE: {"class_type": "SaveImage", "inputs": {"filename_prefix": "parity", "images": ["8", 0]}},
    }
    if latent is not None:
        graph["5"] = latent
    return {**graph, **(extra or {}), **sampler_nodes}


def _empty(width=64, height=64, batch=1):
    return {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}}


def txt2img(*, seed, width=64, height=64, batch=1, positive=POSITIVE, negative=NEGATIVE, clip_skip=None,
            **sampling) -> dict:
    extra, clip = {}, ("4", 1)
    if clip_skip is not None:
        extra["10"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": clip_skip}}
        clip = ("10", 0)
    return _graph({"3": _ksampler(["5", 0], seed=seed, **sampling)}, ("3", 0), latent=_empty(width, height, batch),
                  positive=positive, negative=negative, clip=clip, extra=extra)


def batch_index() -> dict:
    """Items 1..2 of a batch of 3: the sampler must draw the noise of those batch positions, not of 0..1."""
    pick = {"class_type": "LatentFromBatch", "inputs": {"samples": ["5", 0], "batch_index": 1, "length": 2}}
    return _graph({"3": _ksampler(["11", 0], seed=77, steps=3)}, ("3", 0), latent=_empty(batch=3),
                  extra={"11": pick})


def img2img() -> dict:
    encode = {
        "12": {"class_type": "LoadImage", "inputs": {"image": INPUT_IMAGE.name}},
        "13": {"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["4", 2]}},
    }
    return _graph({"3": _ksampler(["13", 0], seed=5, steps=4, denoise=0.6)}, ("3", 0), extra=encode)


def advanced_two_pass() -> dict:
    """Steps 0..2 keeping the leftover noise, then 2..4 without adding noise: one 4-step run split in two."""
    def advanced(latent, *, add_noise, start, end, leftover):
        return {"class_type": "KSamplerAdvanced", "inputs": {
            "add_noise": add_noise, "noise_seed": 8, "steps": 4, "cfg": 6.5, "sampler_name": "dpmpp_2m",
            "scheduler": "karras", "start_at_step": start, "end_at_step": end,
            "return_with_leftover_noise": leftover, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": latent}}
    passes = {
        "3": advanced(["5", 0], add_noise="enable", start=0, end=2, leftover="enable"),
        "14": advanced(["3", 0], add_noise="disable", start=2, end=10000, leftover="disable"),
    }
    return _graph(passes, ("14", 0), latent=_empty())


CASES: dict[str, Callable[[], dict]] = {
    "euler_normal": lambda: txt2img(seed=1, sampler="euler", scheduler="normal"),
    "euler_ancestral_karras": lambda: txt2img(seed=2, sampler="euler_ancestral", scheduler="karras"),
    "dpmpp_2m_karras": lambda: txt2img(seed=3, sampler="dpmpp_2m", scheduler="karras", steps=4),
    "dpmpp_2m_sde_exponential": lambda: txt2img(seed=4, sampler="dpmpp_2m_sde", scheduler="exponential", steps=4),
    "heun_simple_96x64": lambda: txt2img(seed=5, sampler="heun", scheduler="simple", steps=2, width=96),
    "ddim_uniform": lambda: txt2img(seed=6, sampler="ddim", scheduler="ddim_uniform", steps=4),
    "uni_pc_sgm_uniform": lambda: txt2img(seed=7, sampler="uni_pc", scheduler="sgm_uniform", steps=4),
    "lcm_simple_64x96": lambda: txt2img(seed=8, sampler="lcm", scheduler="simple", steps=3, cfg=1.5, height=96),
    "batch3": lambda: txt2img(seed=9, batch=3, sampler="euler_ancestral", scheduler="normal", steps=2),
    "batch_index": batch_index,
    "img2img_denoise_0_6": img2img,
    "advanced_two_pass": advanced_two_pass,
    "weighted_prompt": lambda: txt2img(seed=10, positive="(cat:1.3) [dog] \\(escaped\\)", negative="(ugly:0.8)"),
    "long_prompt": lambda: txt2img(seed=11, positive=LONG_PROMPT),
    "clip_skip_2": lambda: txt2img(seed=12, clip_skip=-2),
    "cfg_1": lambda: txt2img(seed=13, cfg=1.0),
}
