"""Parity cases: small ComfyUI API-format graphs run on upstream ComfyUI (golden images) and on comfyd.

The cases use the seeded random-weight SD1.5 checkpoint CHECKPOINT and the UNet UNET_640
(``python -m tests.golden.checkpoint <models>``); the server's input folder needs INPUT_IMAGES (make_golden.py
uploads them), and its models folder the seeded files the cases load: lora.PARITY_LORAS in loras/
(``python tests/golden/lora.py <models>/loras``), controlnet.PARITY_CONTROLNETS in controlnet/
(``python -m tests.golden.controlnet <models>/controlnet``), control_lora.PARITY_CONTROL_LORAS there too
(``python -m tests.golden.control_lora <models>/controlnet``), upscaler.PARITY_UPSCALERS in upscale_models/
(``python -m tests.golden.upscaler <models>/upscale_models``), and adapter.PARITY_ADAPTERS in controlnet/ with the
UNet they need, adapter.PARITY_UNETS, in diffusion_models/ (``python -m tests.golden.adapter <models>``), and the
inpainting checkpoint INPAINT_CHECKPOINT in checkpoints/ (``python -m tests.golden.inpaint <models>/checkpoints``).
Each builder returns a fresh prompt whose only output node is a SaveImage with id OUTPUT_NODE; its images are the
case's golden files `<case>_<i>.png`.

INPUT_MASKED is input_64.png with an alpha channel: opaque except a disc of radius 12 around (40, 28) that is
fully transparent, fading back to opaque over the next 6 pixels (alpha = clip((r - 12) / 6, 0, 1) * 255), so
LoadImage's mask (1 - alpha) has soft edges for the mask resizing and rounding to act on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import checkpoint
from .adapter import PARITY_ADAPTERS, PARITY_UNETS
from .control_lora import PARITY_CONTROL_LORAS
from .controlnet import PARITY_CONTROLNETS
from .lora import PARITY_LORAS
from .upscaler import PARITY_UPSCALERS

CHECKPOINT = checkpoint.NAME
UNET_640 = checkpoint.UNET_640
MERGE_PARTNER = checkpoint.MERGE_PARTNER  # CHECKPOINT drawn with another seed: merges' second model
INPAINT_CHECKPOINT = "parity-inpaint-s6.safetensors"  # CHECKPOINT with a 9-channel UNet input (inpaint.py)
INPUT_IMAGE = Path(__file__).with_name("input_64.png")
INPUT_MASKED = Path(__file__).with_name("input_64_rgba.png")
INPUT_IMAGES = (INPUT_IMAGE, INPUT_MASKED)
LORA_A, LORA_B = PARITY_LORAS
CONTROLNET_A, CONTROLNET_B = PARITY_CONTROLNETS
[CONTROL_LORA] = PARITY_CONTROL_LORAS
ESRGAN_X4, ESRGAN_X2 = PARITY_UPSCALERS
[T2I_ADAPTER], [UNET_2RB] = PARITY_ADAPTERS, PARITY_UNETS
GOLDEN_DIR = Path(__file__).with_name("sd15")
OUTPUT_NODE = "9"

POSITIVE = "a photo of a cat sitting on a red sofa"
NEGATIVE = "blurry, low quality"
LONG_PROMPT = ", ".join(["a very detailed oil painting of a lighthouse on a rocky coast at sunset"] * 8)


def _ksampler(latent, *, seed, steps=3, cfg=7.0, sampler="euler", scheduler="normal", denoise=1.0, model=("4", 0),
              positive_node=("6", 0), negative_node=("7", 0)):
    return {"class_type": "KSampler", "inputs": {
        "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
        "denoise": denoise, "model": list(model), "positive": list(positive_node), "negative": list(negative_node),
        "latent_image": latent}}


def _graph(sampler_nodes: dict, samples, *, latent=None, positive=POSITIVE, negative=NEGATIVE, clip=("4", 1),
           extra: dict | None = None, checkpoint=CHECKPOINT) -> dict:
    """Checkpoint, two text encodes, the given sampling nodes, decode and save (node "9")."""
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
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
            clip=("4", 1), extra: dict | None = None, checkpoint=CHECKPOINT, **sampling) -> dict:
    extra = dict(extra or {})
    if clip_skip is not None:
        extra["10"] = {"class_type": "CLIPSetLastLayer",
                       "inputs": {"clip": list(clip), "stop_at_clip_layer": clip_skip}}
        clip = ("10", 0)
    return _graph({"3": _ksampler(["5", 0], seed=seed, **sampling)}, ("3", 0), latent=_empty(width, height, batch),
                  positive=positive, negative=negative, clip=clip, extra=extra, checkpoint=checkpoint)


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


def loras(*chain: tuple[str, float, float]) -> dict:
    """euler_normal's graph with LoraLoaders (file, model strength, CLIP strength) chained after the checkpoint."""
    extra, model, clip = {}, ("4", 0), ("4", 1)
    for node, (name, strength_model, strength_clip) in enumerate(chain, start=20):
        extra[str(node)] = {"class_type": "LoraLoader", "inputs": {
            "model": list(model), "clip": list(clip), "lora_name": name, "strength_model": strength_model,
            "strength_clip": strength_clip}}
        model, clip = (str(node), 0), (str(node), 1)
    return txt2img(seed=1, model=model, clip=clip, extra=extra)


def lora_model_only() -> dict:
    extra = {"20": {"class_type": "LoraLoaderModelOnly", "inputs": {
        "model": ["4", 0], "lora_name": LORA_A, "strength_model": -0.5}}}
    return txt2img(seed=1, model=("20", 0), extra=extra)


def _load_masked():
    return {"class_type": "LoadImage", "inputs": {"image": INPUT_MASKED.name}}


def inpaint_noise_mask(checkpoint=CHECKPOINT) -> dict:
    """img2img of INPUT_MASKED re-noising only where its alpha is transparent (LoadImage's mask). On
    INPAINT_CHECKPOINT the UNet also reads the noise mask and the whole (unmasked) image's latent."""
    nodes = {
        "12": _load_masked(),
        "13": {"class_type": "VAEEncode", "inputs": {"pixels": ["12", 0], "vae": ["4", 2]}},
        "15": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["13", 0], "mask": ["12", 1]}},
    }
    return _graph({"3": _ksampler(["15", 0], seed=14, steps=4, denoise=0.8)}, ("3", 0), extra=nodes,
                  checkpoint=checkpoint)


def _encode_for_inpaint(pixels, mask, grow):
    return {"class_type": "VAEEncodeForInpaint", "inputs": {
        "pixels": list(pixels), "vae": ["4", 2], "mask": list(mask), "grow_mask_by": grow}}


def inpaint_vae_encode(checkpoint=CHECKPOINT) -> dict:
    """VAEEncodeForInpaint: masked pixels greyed out before encoding, the rounded mask grown by 6 pixels."""
    nodes = {"12": _load_masked(), "13": _encode_for_inpaint(("12", 0), ("12", 1), 6)}
    return _graph({"3": _ksampler(["13", 0], seed=15, steps=4)}, ("3", 0), extra=nodes, checkpoint=checkpoint)


def inpaint_model_outpaint() -> dict:
    """INPUT_IMAGE padded by 16 pixels on the left and 8 on top (80x72), the mask feathered 8 pixels into the
    image, encoded for inpainting and sampled on INPAINT_CHECKPOINT."""
    nodes = {
        "12": _load_hint(),
        "16": {"class_type": "ImagePadForOutpaint", "inputs": {
            "image": ["12", 0], "left": 16, "top": 8, "right": 0, "bottom": 0, "feathering": 8}},
        "13": _encode_for_inpaint(("16", 0), ("16", 1), 6),
    }
    return _graph({"3": _ksampler(["13", 0], seed=19, steps=4)}, ("3", 0), extra=nodes,
                  checkpoint=INPAINT_CHECKPOINT)


def _encode(node, text):
    return {node: {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}}}


def _combine(first, second):
    return {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": list(first),
                                                             "conditioning_2": list(second)}}


def area_composition() -> dict:
    """The prompt everywhere plus two areas on a 128x96 image: one on the left edge over the full height, one
    inside the image (feathered on all sides) at a lower strength, overlapping the first by 8 pixels."""
    def area(conditioning, *, width, height, x, y, strength):
        return {"class_type": "ConditioningSetArea", "inputs": {
            "conditioning": [conditioning, 0], "width": width, "height": height, "x": x, "y": y, "strength": strength}}
    nodes = {
        **_encode("16", "a red sofa in a living room"),
        **_encode("17", "a black cat, close-up"),
        "18": area("16", width=64, height=96, x=0, y=0, strength=1.0),
        "19": area("17", width=64, height=64, x=56, y=16, strength=0.7),
        "20": _combine(("6", 0), ("18", 0)),
        "21": _combine(("20", 0), ("19", 0)),
    }
    return txt2img(seed=16, width=128, height=96, positive_node=("21", 0), extra=nodes)


def timestep_range() -> dict:
    """One prompt for the first 40% of the schedule, another for the rest (prompt editing)."""
    def between(conditioning, start, end):
        return {"class_type": "ConditioningSetTimestepRange", "inputs": {
            "conditioning": [conditioning, 0], "start": start, "end": end}}
    nodes = {**_encode("16", "a dog in the snow"), "17": between("6", 0.0, 0.4), "18": between("16", 0.4, 1.0),
             "19": _combine(("17", 0), ("18", 0))}
    return txt2img(seed=17, steps=5, positive_node=("19", 0), extra=nodes)


def conditioning_average() -> dict:
    """30% of the prompt and 70% of LONG_PROMPT (over 77 tokens), its conditioning cut to the prompt's length."""
    nodes = {**_encode("16", LONG_PROMPT), "17": {"class_type": "ConditioningAverage", "inputs": {
        "conditioning_to": ["6", 0], "conditioning_from": ["16", 0], "conditioning_to_strength": 0.3}}}
    return txt2img(seed=18, positive_node=("17", 0), extra=nodes)


def _load_hint():
    return {"class_type": "LoadImage", "inputs": {"image": INPUT_IMAGE.name}}


def _controlnet(name):
    return {"class_type": "ControlNetLoader", "inputs": {"control_net_name": name}}


def _apply_advanced(control, *, positive, negative, strength, start, end, vae=None):
    inputs = {"positive": list(positive), "negative": list(negative), "control_net": [control, 0],
              "image": ["12", 0], "strength": strength, "start_percent": start, "end_percent": end}
    return {"class_type": "ControlNetApplyAdvanced", "inputs": {**inputs, **({"vae": list(vae)} if vae else {})}}


def controlnet_advanced() -> dict:
    """euler_normal's graph with one ControlNet on both prompts for the first 70% of the schedule, the hint
    being INPUT_IMAGE."""
    nodes = {"12": _load_hint(), "30": _controlnet(CONTROLNET_A),
             "31": _apply_advanced("30", positive=("6", 0), negative=("7", 0), strength=0.8, start=0.0, end=0.7)}
    return txt2img(seed=1, positive_node=("31", 0), negative_node=("31", 1), extra=nodes)


def controlnet_chain() -> dict:
    """The old ControlNetApply (positive prompt only) with one ControlNet, then ControlNetApplyAdvanced with
    another from 20% of the schedule on: chained after the first on the positive prompt, alone on the negative.
    The VAE input is accepted and unused: SD ControlNets take the hint in pixels."""
    nodes = {"12": _load_hint(), "30": _controlnet(CONTROLNET_A), "32": _controlnet(CONTROLNET_B),
             "31": {"class_type": "ControlNetApply", "inputs": {
                 "conditioning": ["6", 0], "control_net": ["30", 0], "image": ["12", 0], "strength": 0.6}},
             "33": _apply_advanced("32", positive=("31", 0), negative=("7", 0), strength=0.5, start=0.2, end=1.0,
                                   vae=("4", 2))}
    return txt2img(seed=1, positive_node=("33", 0), negative_node=("33", 1), extra=nodes)


def control_lora() -> dict:
    """euler_normal's graph with a Control-LoRA (ControlNetLoader) on both prompts for the first 80% of the
    schedule: its network is built from the checkpoint's UNet when the sampler first runs it."""
    nodes = {"12": _load_hint(), "30": _controlnet(CONTROL_LORA),
             "31": _apply_advanced("30", positive=("6", 0), negative=("7", 0), strength=0.9, start=0.0, end=0.8)}
    return txt2img(seed=1, positive_node=("31", 0), negative_node=("31", 1), extra=nodes)


def _two_block_unet(extra: dict | None = None, **sampling) -> dict:
    """txt2img on UNET_2RB (UNETLoader, node 50) with the checkpoint's CLIP and VAE."""
    unet = {"50": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET_2RB, "weight_dtype": "default"}}}
    return txt2img(seed=20, model=("50", 0), extra={**unet, **(extra or {})}, **sampling)


def t2i_adapter() -> dict:
    """The two-block UNet with a light T2I-Adapter on both prompts for the first 80% of the schedule."""
    nodes = {"12": _load_hint(), "30": _controlnet(T2I_ADAPTER),
             "31": _apply_advanced("30", positive=("6", 0), negative=("7", 0), strength=0.9, start=0.0, end=0.8)}
    return _two_block_unet(nodes, positive_node=("31", 0), negative_node=("31", 1))


def _upscale(model_name, image) -> dict:
    return {"40": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
            "41": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["40", 0], "image": list(image)}}}


def _save(image) -> dict:
    return {OUTPUT_NODE: {"class_type": "SaveImage", "inputs": {"filename_prefix": "parity", "images": list(image)}}}


def esrgan_image() -> dict:
    """INPUT_IMAGE through an ESRGAN in the original key layout (x4), nothing else."""
    return {"12": _load_hint(), **_upscale(ESRGAN_X4, ("12", 0)), **_save(("41", 0))}


def esrgan_decoded() -> dict:
    """euler_normal's decoded image through an ESRGAN in the BasicSR key layout (x2)."""
    return {**txt2img(seed=1), **_upscale(ESRGAN_X2, ("8", 0)), **_save(("41", 0))}


def patched(class_type: str, seed: int, *, ksampler: dict | None = None, extra: dict | None = None,
            **inputs) -> dict:
    """txt2img's graph sampling through a model patch node (node "20") put between checkpoint and sampler, with
    `ksampler` options and `extra` nodes. With seed 1 and no options it is euler_normal, patched."""
    extra = {**(extra or {}), "20": {"class_type": class_type, "inputs": {"model": ["4", 0], **inputs}}}
    return txt2img(seed=seed, model=("20", 0), extra=extra, **(ksampler or {}))


def unet_640(class_type: str | None = None, **inputs) -> dict:
    """txt2img on UNET_640 (UNETLoader, node 51) with the checkpoint's CLIP and VAE, through the patch node
    `class_type` (node 52) when given."""
    extra = {"51": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET_640, "weight_dtype": "default"}}}
    model = ("51", 0)
    if class_type is not None:
        extra["52"] = {"class_type": class_type, "inputs": {"model": ["51", 0], **inputs}}
        model = ("52", 0)
    return txt2img(seed=33, model=model, extra=extra)


def guided(guider: str, *, sampler: dict | None = None, sigmas: dict | None = None, extra: dict | None = None,
           latent=("5", 0), **inputs) -> dict:
    """SamplerCustomAdvanced (node 3) with the guider `guider` (node 60, its conditionings given as node ids) at
    euler / normal, 3 steps, noise seed 1, unless `sampler` (node 64) or `sigmas` (node 65) say otherwise; node 61
    encodes a second prompt and node 62 the empty one."""
    nodes = {
        **(extra or {}),
        "60": {"class_type": guider, "inputs": {"model": ["4", 0], **inputs}},
        "61": {"class_type": "CLIPTextEncode", "inputs": {"text": "a watercolor of a dog", "clip": ["4", 1]}},
        "62": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "63": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "64": sampler or {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "65": sigmas or _basic_sigmas(),
        "3": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["63", 0], "guider": ["60", 0],
                                                                 "sampler": ["64", 0], "sigmas": ["65", 0],
                                                                 "latent_image": list(latent)}},
    }
    return _graph(nodes, ("3", 0), latent=_empty())


def _basic_sigmas(scheduler: str = "normal", steps: int = 3) -> dict:
    return {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": scheduler, "steps": steps,
                                                       "denoise": 1.0}}


def custom(sampler: tuple[str, dict] | None = None, sigmas: tuple[str, dict] | None = None, cfg: float = 7.0,
           **sigmas_source) -> dict:
    """guided() with a CFGGuider and the given sampler node and sigmas node (class, inputs)."""
    return guided("CFGGuider", positive=["6", 0], negative=["7", 0], cfg=cfg,
                  sampler=sampler and {"class_type": sampler[0], "inputs": sampler[1]},
                  sigmas=sigmas and {"class_type": sigmas[0], "inputs": sigmas[1]})


def sigmas_of(node: str, **inputs) -> tuple[str, dict]:
    """A sigmas node taking BasicScheduler's normal 3-step sigmas (node 66) as its input `sigmas`."""
    return node, {"sigmas": ["66", 0], **inputs}


def with_base_sigmas(graph: dict) -> dict:
    graph["66"] = _basic_sigmas()
    return graph


def noised_img2img() -> dict:
    """INPUT_IMAGE encoded, noised by AddNoise to the lower half of a 4-step schedule (SplitSigmasDenoise), then
    sampled down those sigmas without more noise."""
    graph = guided("CFGGuider", positive=["6", 0], negative=["7", 0], cfg=7.0, latent=("69", 0),
                   sigmas={"class_type": "SplitSigmasDenoise", "inputs": {"sigmas": ["66", 0], "denoise": 0.5}},
                   extra={"12": _load_hint(), "13": {"class_type": "VAEEncode",
                                                      "inputs": {"pixels": ["12", 0], "vae": ["4", 2]}},
                          "66": _basic_sigmas(steps=4),
                          "67": {"class_type": "RandomNoise", "inputs": {"noise_seed": 9}},
                          "68": {"class_type": "DisableNoise", "inputs": {}},
                          "69": {"class_type": "AddNoise", "inputs": {"model": ["4", 0], "noise": ["67", 0],
                                                                      "sigmas": ["65", 1], "latent_image": ["13", 0]}}})
    graph["3"]["inputs"].update(noise=["68", 0], sigmas=["65", 1])
    return graph


def image_op(class_type: str, *, source: str = "image", **inputs) -> dict:
    """INPUT_IMAGE (node 12) through one image node (node 70, its image input named `source`), saved."""
    return {"12": _load_hint(), "70": {"class_type": class_type, "inputs": {source: ["12", 0], **inputs}},
            **_save(("70", 0))}


def image_blend(mode: str, factor: float) -> dict:
    """INPUT_IMAGE blended with its mirror image (node 71)."""
    graph = image_op("ImageBlend", source="image1", image2=["71", 0], blend_factor=factor, blend_mode=mode)
    graph["71"] = {"class_type": "ImageFlip", "inputs": {"image": ["12", 0], "flip_method": "y-axis: horizontally"}}
    return graph


def batch_pick() -> dict:
    """INPUT_IMAGE with noise, repeated into a batch of 3, items 1..2 taken out of it."""
    graph = image_op("ImageFromBatch", image=["72", 0], batch_index=1, length=2)  # instead of node 12
    graph["72"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["73", 0], "amount": 3}}
    graph["73"] = {"class_type": "ImageAddNoise", "inputs": {"image": ["12", 0], "seed": 5, "strength": 0.3}}
    return graph


def previewed(*chain: tuple[str, dict]) -> dict:
    """String nodes 80, 81, ... in a chain (each takes the previous one's first output as its first input, the
    first its own inputs), shown by a PreviewAny as the output node."""
    graph = {}
    for i, (class_type, inputs) in enumerate(chain):
        node = dict(inputs)
        if i:
            first = next(iter(node))
            node[first] = [str(79 + i), 0]
        graph[str(80 + i)] = {"class_type": class_type, "inputs": node}
    graph[OUTPUT_NODE] = {"class_type": "PreviewAny", "inputs": {"source": [str(79 + len(chain)), 0]}}
    return graph


def _regex(pattern: str, mode: str, group: int = 1, text: str = "Cat9 dog42 COW7\nhen3", **flags) -> tuple:
    return ("RegexExtract", {"string": text, "regex_pattern": pattern, "mode": mode, "case_insensitive": True,
                             "multiline": False, "dotall": False, "group_index": group, **flags})


def _noisy_frames(amount: int = 3) -> dict:
    """INPUT_IMAGE repeated `amount` times, each copy with its own noise (node 74)."""
    return {"12": _load_hint(),
            "75": {"class_type": "RepeatImageBatch", "inputs": {"image": ["12", 0], "amount": amount}},
            "74": {"class_type": "ImageAddNoise", "inputs": {"image": ["75", 0], "seed": 3, "strength": 0.4}}}


def animated(class_type: str, **inputs) -> dict:
    """Three noisy copies of INPUT_IMAGE saved as one animation by `class_type` (the output node)."""
    return {**_noisy_frames(), OUTPUT_NODE: {"class_type": class_type, "inputs": {
        "images": ["74", 0], "filename_prefix": "parity", **inputs}}}


def yuv(output: int | None = None) -> dict:
    """INPUT_IMAGE split into Y, U, V planes (node 70): plane `output` saved, or by default the planes joined
    back with U and V swapped (node 76)."""
    graph = image_op("ImageRGBToYUV")
    if output is None:
        graph["76"] = {"class_type": "ImageYUVToRGB", "inputs": {"Y": ["70", 0], "U": ["70", 2], "V": ["70", 1]}}
        output = ("76", 0)
    else:
        output = ("70", output)
    return {**graph, **_save(output)}


def latent_operation(class_type: str, **inputs) -> dict:
    """euler_normal's latent through LatentApplyOperation (node 81) with the operation `class_type` (node 80)."""
    graph = txt2img(seed=1)
    graph["80"] = {"class_type": class_type, "inputs": inputs}
    graph["81"] = {"class_type": "LatentApplyOperation", "inputs": {"samples": ["3", 0], "operation": ["80", 0]}}
    graph["8"]["inputs"]["samples"] = ["81", 0]
    return graph


def guidance_operation(class_type: str, **inputs) -> dict:
    """euler_normal through LatentApplyOperationCFG with the operation `class_type` (node 80)."""
    return patched("LatentApplyOperationCFG", 1, operation=["80", 0],
                   extra={"80": {"class_type": class_type, "inputs": inputs}})


def deep_shrink(block_number: int, factor: float, after_skip: bool, down: str, up: str) -> dict:
    return unet_640("PatchModelAddDownscale", block_number=block_number, downscale_factor=factor,
                    start_percent=0.0, end_percent=0.6, downscale_after_skip=after_skip, downscale_method=down,
                    upscale_method=up)


def merge(nodes: dict, *, model=("4", 0), clip=("4", 1)) -> dict:
    """euler_normal's graph with MERGE_PARTNER loaded too (node 15) and the merge `nodes` (16, 17, ...), sampling with
    `model` and encoding with `clip`."""
    partner = {"15": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": MERGE_PARTNER}}}
    return txt2img(seed=1, model=model, clip=clip, extra={**partner, **nodes})


def merge_node(class_type: str, first=("4", 0), second=("15", 0), kind: str = "model", **inputs) -> dict:
    return {"class_type": class_type, "inputs": {f"{kind}1": list(first), f"{kind}2": list(second), **inputs}}


# ModelMergeSD1's inputs, and the ratios of the blocks the parity UNet has (the others 1.0).
SD1_BLOCKS = ("time_embed.", "label_emb.", *(f"input_blocks.{i}." for i in range(12)),
              *(f"middle_block.{i}." for i in range(3)), *(f"output_blocks.{i}." for i in range(12)), "out.")
SD1_BLOCK_RATIOS = {"time_embed.": 0.7, "input_blocks.0.": 0.5, "input_blocks.1.": 0.2, "output_blocks.0.": 0.9,
                    "output_blocks.1.": 0.0, "out.": 0.6}


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
    "lora_0_8": lambda: loras((LORA_A, 0.8, 0.8)),
    "lora_chain": lambda: loras((LORA_A, 1.0, 1.0), (LORA_B, 0.6, -0.4)),
    "lora_model_only_neg_0_5": lora_model_only,
    "inpaint_noise_mask": inpaint_noise_mask,
    "inpaint_vae_encode_grow_6": inpaint_vae_encode,
    "inpaint_model_vae_encode": lambda: inpaint_vae_encode(INPAINT_CHECKPOINT),
    "inpaint_model_outpaint": inpaint_model_outpaint,
    "inpaint_model_noise_mask": lambda: inpaint_noise_mask(INPAINT_CHECKPOINT),
    # no mask: the inpainting UNet paints everything over a blank image
    "inpaint_model_txt2img": lambda: txt2img(seed=1, checkpoint=INPAINT_CHECKPOINT),
    "area_composition": area_composition,
    "timestep_range": timestep_range,
    "conditioning_average": conditioning_average,
    "controlnet_advanced": controlnet_advanced,
    "controlnet_chain": controlnet_chain,
    "control_lora": control_lora,
    "esrgan_x4_image": esrgan_image,
    "esrgan_x2_decoded": esrgan_decoded,
    "unet_two_blocks": _two_block_unet,
    "t2i_adapter_light": t2i_adapter,
    # model patches: guidance functions and other sampling schedules
    "rescale_cfg_0_7": lambda: patched("RescaleCFG", 1, multiplier=0.7),
    "cfg_zero_star": lambda: patched("CFGZeroStar", 1),
    "cfg_norm_0_8": lambda: patched("CFGNorm", 1, strength=0.8),
    "mahiro": lambda: patched("Mahiro", 1),
    "tcfg": lambda: patched("TCFG", 1),
    "apg": lambda: patched("APG", 1, eta=0.5, norm_threshold=2.0, momentum=0.5),
    "epsilon_scaling_1_05": lambda: patched("Epsilon Scaling", 1, scaling_factor=1.05),
    "fresca": lambda: patched("FreSca", 1, scale_low=0.8, scale_high=1.5, freq_cutoff=2),
    "unet_self_attention_multiply": lambda: patched("UNetSelfAttentionMultiply", 1, q=1.5, k=0.8, v=1.2, out=0.9),
    "unet_cross_attention_multiply": lambda: patched("UNetCrossAttentionMultiply", 1, q=0.7, k=1.3, v=1.1, out=1.2),
    "clip_attention_multiply": lambda: txt2img(seed=1, clip=("20", 0), extra={"20": {
        "class_type": "CLIPAttentionMultiply",
        "inputs": {"clip": ["4", 1], "q": 1.2, "k": 0.9, "v": 1.3, "out": 0.8}}}),
    "perp_neg_patch": lambda: patched("PerpNeg", 1, empty_conditioning=["62", 0], neg_scale=1.5, extra={
        "62": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}}}),
    # guiders
    "cfg_guider": lambda: guided("CFGGuider", positive=["6", 0], negative=["7", 0], cfg=7.0),
    "dual_cfg_regular": lambda: guided("DualCFGGuider", cond1=["6", 0], cond2=["61", 0], negative=["7", 0],
                                       cfg_conds=5.0, cfg_cond2_negative=3.0, style="regular"),
    "dual_cfg_nested": lambda: guided("DualCFGGuider", cond1=["6", 0], cond2=["61", 0], negative=["7", 0],
                                      cfg_conds=4.0, cfg_cond2_negative=2.5, style="nested"),
    "perp_neg_guider": lambda: guided("PerpNegGuider", positive=["6", 0], negative=["7", 0],
                                      empty_conditioning=["62", 0], cfg=6.0, neg_scale=1.5),
    # image nodes
    "image_crop": lambda: image_op("ImageCrop", width=40, height=24, x=10, y=30),
    "image_flip_x": lambda: image_op("ImageFlip", flip_method="x-axis: vertically"),
    "image_rotate_90": lambda: image_op("ImageRotate", rotation="90 degrees"),
    "image_blur": lambda: image_op("ImageBlur", blur_radius=3, sigma=1.5),
    "image_sharpen": lambda: image_op("ImageSharpen", sharpen_radius=2, sigma=1.0, alpha=0.5),
    "image_blend_overlay": lambda: image_blend("overlay", 0.6),
    "image_blend_soft_light": lambda: image_blend("soft_light", 0.8),
    "image_quantize_bayer_4": lambda: image_op("ImageQuantize", colors=16, dither="bayer-4"),
    "image_quantize_floyd_steinberg": lambda: image_op("ImageQuantize", colors=8, dither="floyd-steinberg"),
    "image_add_noise": lambda: image_op("ImageAddNoise", seed=5, strength=0.3),
    "resize_and_pad": lambda: image_op("ResizeAndPadImage", target_width=96, target_height=48, padding_color="white",
                                       interpolation="bicubic"),
    "scale_to_max_dimension": lambda: image_op("ImageScaleToMaxDimension", upscale_method="bilinear",
                                               largest_size=40),
    "image_batch_pick": batch_pick,
    "rebatch_images": lambda: image_op("RebatchImages", source="images", images=["74", 0], batch_size=2) | {
        "74": {"class_type": "ImageAddNoise", "inputs": {"image": ["75", 0], "seed": 3, "strength": 0.4}},
        "75": {"class_type": "RepeatImageBatch", "inputs": {"image": ["12", 0], "amount": 3}}},
    # a batch of 3 sampled as batches of 2 and 1: each latent keeps its batch index, so its noise
    "rebatch_latents": lambda: _graph({"3": _ksampler(["76", 0], seed=7, steps=2)}, ("3", 0), latent=_empty(batch=3),
                                      extra={"76": {"class_type": "RebatchLatents",
                                                    "inputs": {"latents": ["5", 0], "batch_size": 2}}}),
    # string nodes, shown by PreviewAny (the golden is the text)
    "string_chain": lambda: previewed(
        ("StringConcatenate", {"string_a": "  hello, wide world ", "string_b": "room 101 and 202  ", "delimiter": "|"}),
        ("StringTrim", {"string": None, "mode": "Both"}),
        ("CaseConverter", {"string": None, "mode": "Title Case"}),
        ("StringReplace", {"string": None, "find": "Wide", "replace": "Narrow"}),
        ("RegexReplace", {"string": None, "regex_pattern": "\\d+", "replace": "#", "count": 1}),
        ("StringSubstring", {"string": None, "start": 2, "end": -3})),
    "string_length": lambda: previewed(("StringLength", {"string": "naïve café 😀"})),
    "string_contains": lambda: previewed(("StringContains", {"string": "A Red Fox", "substring": "red fox",
                                                             "case_sensitive": False})),
    "string_compare": lambda: previewed(("StringCompare", {"string_a": "photo.PNG", "string_b": ".png",
                                                           "mode": "Ends With", "case_sensitive": True})),
    "regex_match_multiline": lambda: previewed(("RegexMatch", {
        "string": "first\nsecond line", "regex_pattern": "^second", "case_insensitive": False, "multiline": True,
        "dotall": False})),
    "regex_first_match": lambda: previewed(_regex("[a-z]+\\d", "First Match")),
    "regex_all_matches": lambda: previewed(_regex("([a-z]+)(\\d+)", "All Matches")),
    "regex_first_group": lambda: previewed(_regex("([a-z]+)(\\d+)", "First Group", group=2)),
    "regex_all_groups_dotall": lambda: previewed(_regex("(o.)", "All Groups", dotall=True, text="to\nbo\nox")),
    # custom sampling: sampler options, schedulers, sigma tools
    "sampler_lms_order_2": lambda: custom(("SamplerLMS", {"order": 2})),
    "sampler_dpmpp_2m_sde_heun": lambda: custom(("SamplerDPMPP_2M_SDE", {
        "solver_type": "heun", "eta": 0.8, "s_noise": 1.0, "noise_device": "cpu"}), ("BasicScheduler", {
            "model": ["4", 0], "scheduler": "karras", "steps": 4, "denoise": 1.0})),
    "sampler_dpmpp_3m_sde_gpu_noise": lambda: custom(("SamplerDPMPP_3M_SDE", {
        "eta": 1.0, "s_noise": 0.9, "noise_device": "gpu"})),
    "sampler_dpmpp_sde_r": lambda: custom(("SamplerDPMPP_SDE", {"eta": 1.0, "s_noise": 1.0, "r": 0.3,
                                                                "noise_device": "cpu"})),
    "sampler_dpmpp_2s_ancestral": lambda: custom(("SamplerDPMPP_2S_Ancestral", {"eta": 0.7, "s_noise": 1.0})),
    "sampler_euler_ancestral_cfg_pp": lambda: custom(("SamplerEulerAncestralCFGPP", {"eta": 0.5, "s_noise": 1.0}),
                                                     cfg=1.5),
    "sampler_dpm_adaptive": lambda: custom(("SamplerDPMAdaptative", {
        "order": 2, "rtol": 0.1, "atol": 0.01, "h_init": 0.05, "pcoeff": 0.0, "icoeff": 1.0, "dcoeff": 0.0,
        "accept_safety": 0.81, "eta": 0.0, "s_noise": 1.0})),
    "sampler_er_sde_reverse_time": lambda: custom(("SamplerER_SDE", {
        "solver_type": "Reverse-time SDE", "max_stage": 2, "eta": 0.5, "s_noise": 1.0})),
    "sampler_er_sde_ode": lambda: custom(("SamplerER_SDE", {"solver_type": "ODE", "max_stage": 3, "eta": 1.0,
                                                            "s_noise": 1.0})),
    "sampler_sa_solver": lambda: custom(("SamplerSASolver", {
        "model": ["4", 0], "eta": 1.0, "sde_start_percent": 0.2, "sde_end_percent": 0.8, "s_noise": 1.0,
        "predictor_order": 2, "corrector_order": 1, "use_pece": False, "simple_order_2": True}),
        ("BasicScheduler", {"model": ["4", 0], "scheduler": "karras", "steps": 4, "denoise": 1.0})),
    "polyexponential_scheduler": lambda: custom(sigmas=("PolyexponentialScheduler", {
        "steps": 3, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 1.5})),
    "laplace_scheduler": lambda: custom(sigmas=("LaplaceScheduler", {
        "steps": 3, "sigma_max": 14.614642, "sigma_min": 0.0291675, "mu": 0.0, "beta": 0.5})),
    "vp_scheduler": lambda: custom(sigmas=("VPScheduler", {"steps": 3, "beta_d": 19.9, "beta_min": 0.1,
                                                           "eps_s": 0.001})),
    "beta_sampling_scheduler": lambda: custom(sigmas=("BetaSamplingScheduler", {
        "model": ["4", 0], "steps": 3, "alpha": 0.5, "beta": 0.7})),
    "extend_intermediate_sigmas": lambda: with_base_sigmas(custom(sigmas=sigmas_of(
        "ExtendIntermediateSigmas", steps=2, start_at_sigma=-1.0, end_at_sigma=1.0, spacing="cosine"))),
    "align_your_steps_sd1_7": lambda: custom(sigmas=("AlignYourStepsScheduler", {
        "model_type": "SD1", "steps": 7, "denoise": 1.0})),
    "align_your_steps_sdxl_denoise": lambda: custom(sigmas=("AlignYourStepsScheduler", {
        "model_type": "SDXL", "steps": 10, "denoise": 0.3})),
    "set_first_sigma": lambda: with_base_sigmas(custom(sigmas=sigmas_of("SetFirstSigma", sigma=10.0))),
    "add_noise_split_sigmas_denoise": noised_img2img,
    "sampling_percent_to_sigma": lambda: {"4": {"class_type": "CheckpointLoaderSimple",
                                                "inputs": {"ckpt_name": CHECKPOINT}},
                                          **previewed(("SamplingPercentToSigma", {
                                              "model": ["4", 0], "sampling_percent": 0.3,
                                              "return_actual_sigma": False}))},
    "sampling_discrete_v_zsnr": lambda: patched("ModelSamplingDiscrete", 1, sampling="v_prediction", zsnr=True),
    "sampling_discrete_lcm": lambda: patched("ModelSamplingDiscrete", 1, sampling="lcm", zsnr=False,
                                             ksampler={"sampler": "lcm", "cfg": 1.5}),
    "sampling_discrete_x0": lambda: patched("ModelSamplingDiscrete", 1, sampling="x0", zsnr=False),
    "sampling_discrete_img_to_img": lambda: patched("ModelSamplingDiscrete", 1, sampling="img_to_img", zsnr=False),
    "sampling_edm_karras": lambda: patched("ModelSamplingContinuousEDM", 1, sampling="edm", sigma_max=80.0,
                                           sigma_min=0.002, ksampler={"scheduler": "karras"}),
    "sampling_edm_eps_normal": lambda: patched("ModelSamplingContinuousEDM", 1, sampling="eps", sigma_max=120.0,
                                               sigma_min=0.002),
    "sampling_continuous_v": lambda: patched("ModelSamplingContinuousV", 1, sampling="v_prediction",
                                             sigma_max=500.0, sigma_min=0.03, ksampler={"scheduler": "exponential"}),
    # UNet patches, on a UNet that has the blocks they act on
    "unet_640": unet_640,
    "freeu": lambda: unet_640("FreeU", b1=1.1, b2=1.5, s1=0.9, s2=0.5),
    "freeu_v2": lambda: unet_640("FreeU_V2", b1=1.3, b2=1.6, s1=0.9, s2=0.4),
    "perturbed_attention_3": lambda: unet_640("PerturbedAttentionGuidance", scale=3.0),
    "self_attention_guidance": lambda: unet_640("SelfAttentionGuidance", scale=1.5, blur_sigma=2.0),
    # issue 13: morphology and YCbCr planes, animations, latent operations, more patches, samplers and schedules
    "morphology_gradient_4": lambda: image_op("Morphology", operation="gradient", kernel_size=4),
    "morphology_top_hat_5": lambda: image_op("Morphology", operation="top_hat", kernel_size=5),
    "morphology_bottom_hat_3": lambda: image_op("Morphology", operation="bottom_hat", kernel_size=3),
    "rgb_to_yuv_u": lambda: yuv(1),
    "rgb_to_yuv_v": lambda: yuv(2),
    "yuv_to_rgb_swapped_chroma": yuv,
    "animated_webp_lossless": lambda: animated("SaveAnimatedWEBP", fps=4.0, lossless=True, quality=80,
                                               method="default"),
    "animated_webp_lossy": lambda: animated("SaveAnimatedWEBP", fps=12.5, lossless=False, quality=60,
                                            method="fastest"),
    "animated_png": lambda: animated("SaveAnimatedPNG", fps=8.0, compress_level=6),
    "latent_tonemap_reinhard": lambda: latent_operation("LatentOperationTonemapReinhard", multiplier=0.5),
    "latent_sharpen": lambda: latent_operation("LatentOperationSharpen", sharpen_radius=2, sigma=1.0, alpha=0.5),
    "guidance_sharpen": lambda: guidance_operation("LatentOperationSharpen", sharpen_radius=3, sigma=1.5,
                                                   alpha=0.8),
    "guidance_tonemap_reinhard": lambda: guidance_operation("LatentOperationTonemapReinhard", multiplier=0.3),
    "renorm_cfg": lambda: patched("RenormCFG", 1, cfg_trunc=5.0, renorm_cfg=1.1),
    "sampler_euler_cfg_pp_regular": lambda: custom(("SamplerEulerCFGpp", {"version": "regular"}), cfg=1.5),
    "sampler_euler_cfg_pp_alternative": lambda: custom(("SamplerEulerCFGpp", {"version": "alternative"}), cfg=1.5),
    "sampler_lcm_upscale": lambda: custom(("SamplerLCMUpscale", {"scale_ratio": 1.5, "scale_steps": -1,
                                                                 "upscale_method": "bislerp"}), cfg=1.5),
    "sampler_lcm_upscale_one_step": lambda: custom(("SamplerLCMUpscale", {"scale_ratio": 2.0, "scale_steps": 1,
                                                                          "upscale_method": "bilinear"}), cfg=1.5),
    "gits_scheduler": lambda: custom(sigmas=("GITSScheduler", {"coeff": 1.2, "steps": 4, "denoise": 1.0})),
    "gits_scheduler_resampled": lambda: custom(sigmas=("GITSScheduler", {"coeff": 0.85, "steps": 25,
                                                                         "denoise": 0.16})),
    "deep_shrink_after_skip": lambda: deep_shrink(1, 2.0, True, "bicubic", "bicubic"),
    "deep_shrink_before_skip": lambda: deep_shrink(1, 1.5, False, "bislerp", "nearest-exact"),
    "hypertile": lambda: patched("HyperTile", 1, tile_size=32, swap_size=1, max_depth=0, scale_depth=False),
    "hypertile_random_128": lambda: patched("HyperTile", 1, tile_size=32, swap_size=3, max_depth=1,
                                            scale_depth=False, ksampler={"width": 128, "height": 128}),
    "tome_0_5": lambda: patched("TomePatchModel", 1, ratio=0.5),
    # issue 13: model merging (a second checkpoint's weights mixed in as patches)
    "model_merge_simple_0_4": lambda: merge({"16": merge_node("ModelMergeSimple", ratio=0.4)}, model=("16", 0)),
    "model_merge_blocks": lambda: merge({"16": merge_node("ModelMergeBlocks", input=0.1, middle=0.5, out=0.75)},
                                        model=("16", 0)),
    "model_merge_sd1_blocks": lambda: merge({"16": merge_node(
        "ModelMergeSD1", **{name: SD1_BLOCK_RATIOS.get(name, 1.0) for name in SD1_BLOCKS})}, model=("16", 0)),
    # B + 0.5 * (A - B): a merge whose second model is itself a merge
    "model_merge_subtract_add": lambda: merge({"16": merge_node("ModelMergeSubtract", multiplier=0.5),
                                               "17": merge_node("ModelMergeAdd", ("15", 0), ("16", 0))},
                                              model=("17", 0)),
    # a LoRA before the merge is scaled with the weight it patched
    "model_merge_after_lora": lambda: merge({
        "16": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["4", 0], "lora_name": LORA_A,
                                                               "strength_model": 0.8}},
        "17": merge_node("ModelMergeSimple", ("16", 0), ratio=0.5)}, model=("17", 0)),
    # ComfyUI keeps text encoders in fp16 on the CPU and rounds merged weights to it, comfyd keeps them in fp32:
    # about 0.03 / 255 apart on average (more for some ratios: 0.3 gave 0.065)
    "clip_merge_simple_0_7": lambda: merge({"16": merge_node("CLIPMergeSimple", ("4", 1), ("15", 1), "clip",
                                                             ratio=0.7)}, clip=("16", 0)),
    "clip_merge_subtract_add": lambda: merge({
        "16": merge_node("CLIPMergeSubtract", ("4", 1), ("15", 1), "clip", multiplier=0.5),
        "17": merge_node("CLIPMergeAdd", ("15", 1), ("16", 0), "clip")}, clip=("17", 0)),
}
