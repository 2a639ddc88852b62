"""Benchmark: comfyd end to end against a plain diffusers pipeline on the same single-file checkpoint and device.

Not a test. Each side runs in its own subprocess (so peak memory is its own), on the same weights, steps, size and
sampler (Euler, ComfyUI's "normal" schedule vs diffusers' EulerDiscreteScheduler), and the report prints ratios:

    python bench/sampling.py                                  # CPU, a tiny generated SD1.5 checkpoint
    python bench/sampling.py --checkpoint /models/sd15.safetensors --size 512 --steps 20   # a real file (CUDA if present)
    python bench/sampling.py --model z_image [--models /ComfyUI/models]   # Z-Image Turbo vs diffusers' ZImagePipeline
    python bench/sampling.py --model flux [--fp8] [--models /ComfyUI/models]   # FLUX.1 dev vs diffusers' FluxPipeline

For Z-Image and FLUX the files are the ones their default workflows name under --models (Z-Image:
diffusion_models/z_image_turbo_bf16.safetensors, text_encoders/qwen_3_4b.safetensors, vae/ae.safetensors; FLUX:
diffusion_models/flux1-dev.safetensors, text_encoders/clip_l.safetensors and t5xxl_fp16.safetensors,
vae/ae.safetensors), or tiny generated ones. Both sides run Euler on the same shifted simple schedule (Z-Image: shift
3 at cfg 1; FLUX: ModelSamplingFlux's size-dependent shift, FluxGuidance 3.5, no negative) from the same noise, and
diffusers gets comfyd's text embeddings. --fp8 (FLUX) loads diffusion_models/flux1-dev-fp8-e4m3fn.safetensors
instead, with UNETLoader's weight_dtype "default": comfyd keeps its linear weights in fp8 and casts them per layer,
diffusers widens the same values to bf16 (CUDA) / fp32 (CPU).

Reported per side: seconds per sampling step (UNet time / steps, CFG batch included), end-to-end seconds per
prompt, model compute per prompt (UNet + VAE + text encoder), the overhead outside model compute, the bytes of the
UNet / transformer parameters as loaded (summed over the timed network's parameters), and peak memory (CUDA: max
allocated; CPU: peak RSS).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POSITIVE, NEGATIVE = "a photo of a cat", "blurry"


class Timer:
    """Accumulates wall time spent inside wrapped module forwards (synchronising CUDA for honest numbers)."""

    def __init__(self, torch, device):
        self.torch, self.device, self.seconds, self.calls = torch, device, 0.0, 0
        self.modules = []

    def wrap(self, module):
        self.modules.append(module)
        forward = module.forward

        def timed(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.sync()
                self.seconds += time.perf_counter() - start
                self.calls += 1

        module.forward = timed

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def parameter_bytes(self) -> int:
        """Bytes of the wrapped networks' parameters and buffers as they are held now (fp8 storage counts 1 each)."""
        return sum(t.numel() * t.element_size() for m in self.modules for t in [*m.parameters(), *m.buffers()])


def peak_memory(torch, device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def workflow(ckpt: str, seed: int, args) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": args.steps, "cfg": 7.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


Z_IMAGE_SHIFT = 3.0


def z_image_workflow(seed: int, args) -> dict:
    """Z-Image Turbo's default workflow, with Euler so that diffusers' flow-matching Euler is the same sampler."""
    from tests.fixtures.z_image import DEFAULT_NAMES

    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": DEFAULT_NAMES["diffusion_models"],
                                                      "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": DEFAULT_NAMES["text_encoders"], "type": "lumina2"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": DEFAULT_NAMES["vae"]}},
        "4": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": Z_IMAGE_SHIFT}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": POSITIVE}},
        "10": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["5", 0]}},
        "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": args.size, "height": args.size,
                                                               "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": seed, "steps": args.steps, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "simple", "denoise": 1.0, "positive": ["5", 0], "negative": ["10", 0],
            "latent_image": ["6", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


FLUX_GUIDANCE = 3.5  # FluxGuidance's default
FLUX_FP8_NAME = "flux1-dev-fp8-e4m3fn.safetensors"  # --fp8: FLUX.1 dev's transformer stored as float8_e4m3fn


def flux_workflow(seed: int, args) -> dict:
    """FLUX.1 dev as its example workflow wires it: FluxGuidance, ModelSamplingFlux at the image size and the
    custom-sampling nodes with a BasicGuider (no negative), with Euler on the simple schedule."""
    from tests.fixtures.flux import DEFAULT_NAMES

    unet = FLUX_FP8_NAME if args.fp8 else DEFAULT_NAMES["dev"]
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": DEFAULT_NAMES["clip_l"],
                                                         "clip_name2": DEFAULT_NAMES["t5"], "type": "flux"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": DEFAULT_NAMES["vae"]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": POSITIVE}},
        "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": FLUX_GUIDANCE}},
        "6": {"class_type": "ModelSamplingFlux", "inputs": {"model": ["1", 0], "max_shift": 1.15, "base_shift": 0.5,
                                                            "width": args.size, "height": args.size}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": args.size, "height": args.size,
                                                               "batch_size": 1}},
        "8": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "11": {"class_type": "BasicScheduler", "inputs": {"model": ["6", 0], "scheduler": "simple",
                                                          "steps": args.steps, "denoise": 1.0}},
        "14": {"class_type": "BasicGuider", "inputs": {"model": ["6", 0], "conditioning": ["5", 0]}},
        "12": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["8", 0], "guider": ["14", 0], "sampler": ["10", 0], "sigmas": ["11", 0],
            "latent_image": ["7", 0]}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["3", 0]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["13", 0]}},
    }


WORKFLOWS = {"z_image": z_image_workflow, "flux": flux_workflow}


def time_first_use(cls, method: str, networks, timer: Timer, wrapped: set) -> None:
    """Wrap `timer` around each network `networks(obj)` gives the first time `cls.method` runs with it (the
    loaders build networks inside the first prompt)."""
    original = getattr(cls, method)

    def patched(self, *args, **kwargs):
        for network in networks(self):
            if id(network) not in wrapped:
                wrapped.add(id(network))
                timer.wrap(network)
        return original(self, *args, **kwargs)

    setattr(cls, method, patched)


async def run_comfyd(args) -> dict:
    import aiohttp
    import torch
    from aiohttp import web

    from engine import Settings
    from engine.models import clip as clip_mod, diffusion, flux, qwen_text, vae as vae_mod, z_image
    from server.app import create_app

    base = Path(tempfile.mkdtemp(prefix="comfyd-bench-"))
    for path in model_files(args).values():  # DiT files sit in <models>/<folder>/ under the names the workflow asks for
        link = base / "models" / "checkpoints" / CHECKPOINT if args.model == "sd15" \
            else base / "models" / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, link)
    settings = Settings(base_directory=base, cpu=args.cpu, disable_custom_nodes=True)
    app = create_app(settings)
    engine = app[__import__("server.keys", fromlist=["ENGINE"]).ENGINE]
    device = engine.device
    timers = {"unet": Timer(torch, device), "vae": Timer(torch, device), "text": Timer(torch, device)}
    wrapped: set[int] = set()
    for cls in (diffusion.DiffusionModel, z_image.ZImageModel, flux.FluxModel):  # the DiTs have their own apply_model
        time_first_use(cls, "apply_model", lambda m: [m.unet], timers["unet"], wrapped)
    time_first_use(vae_mod.VAE, "decode", lambda v: [v.autoencoder], timers["vae"], wrapped)
    for cls in (clip_mod.TextEncoder, qwen_text.QwenTextEncoder):
        time_first_use(cls, "encode_from_tokens", lambda c: c.models.values(), timers["text"], wrapped)
    build = (lambda seed: WORKFLOWS[args.model](seed, args)) if args.model in WORKFLOWS \
        else (lambda seed: workflow(CHECKPOINT, seed, args))

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    times = []
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        ws = await session.ws_connect("/ws?clientId=bench")
        await ws.receive()
        for i in range(args.prompts + 1):  # the first prompt loads the model: a warm-up, not timed
            if i == 1:
                for t in timers.values():
                    t.seconds, t.calls = 0.0, 0
            start = time.perf_counter()
            resp = await session.post("/prompt", json={"prompt": build(1000 + i), "client_id": "bench"})
            prompt_id = (await resp.json())["prompt_id"]
            while True:
                msg = json.loads((await ws.receive()).data)
                if msg["type"] == "execution_error":
                    raise RuntimeError(msg["data"]["exception_message"])
                if msg["type"] == "executing" and msg["data"]["node"] is None and msg["data"]["prompt_id"] == prompt_id:
                    break
            if i > 0:
                times.append(time.perf_counter() - start)
        await ws.close()
    await runner.cleanup()
    shutil.rmtree(base, ignore_errors=True)
    return summary(times, timers, args, peak_memory(torch, device), str(device))


def run_diffusers(args) -> dict:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from engine import devices
    from engine.models.load import load_checkpoint
    from engine.text import SD1_CLIP_L, HFClipEncoder, encode_prompt

    device = devices.select_device(args.cpu)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    loaded = load_checkpoint(args.checkpoint, device, dtype)
    text_model = loaded.clip[0].model
    timers = {"unet": Timer(torch, device), "vae": Timer(torch, device), "text": Timer(torch, device)}
    timers["unet"].wrap(loaded.unet)
    timers["vae"].wrap(loaded.vae)
    timers["text"].wrap(text_model)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="linspace")
    pipe = StableDiffusionPipeline(vae=loaded.vae, text_encoder=text_model, tokenizer=None, unet=loaded.unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.config.scaling_factor = loaded.latent_scale_factor
    def run_one(i):
        encoder = HFClipEncoder(text_model, SD1_CLIP_L)  # the same embeddings comfyd uses, no tokenizer needed
        positive = encode_prompt(POSITIVE, encoder, SD1_CLIP_L).cond.to(device, dtype)
        negative = encode_prompt(NEGATIVE, encoder, SD1_CLIP_L).cond.to(device, dtype)
        generator = torch.Generator("cpu").manual_seed(1000 + i)
        pipe(prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=args.steps,
             guidance_scale=7.0, height=args.size, width=args.size, generator=generator, output_type="np")

    times = timed_runs(args, timers, run_one)
    return summary(times, timers, args, peak_memory(torch, device), str(device))


def run_diffusers_dit(args, pipeline: str, load_transformer, sampling, text_encoder, inputs) -> dict:
    """diffusers' ``pipeline`` (a class name) on the files comfyd loads: the transformer ``load_transformer`` reads
    (z_image.load_z_image, flux.load_flux: fp8 values widened to the compute dtype), the VAE with the FLUX latent
    statistics both families share, flow-matching Euler down comfyd's sigmas for ``sampling`` from comfyd's noise.
    ``text_encoder(files, device, manager)``: comfyd's CLIP object for the family (timed; its embeddings go in);
    ``inputs(encoder, noise, cast)``: the pipeline's family-specific arguments (``cast`` moves a tensor over)."""
    import diffusers
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from engine import devices
    from engine.models.flux import LATENT_SCALE, LATENT_SHIFT
    from engine.models.load import load_vae_file, open_checkpoint
    from engine.models.manager import ModelManager
    from engine.sampling import schedules

    device = devices.select_device(args.cpu)
    manager = ModelManager(device)  # only for comfyd's dtype choices
    dtype = manager.bf16_or_fp32()
    files = model_files(args)
    with open_checkpoint(files["diffusion_models"], device) as file:
        _, transformer = load_transformer(file, device, dtype)
    encoder = text_encoder(files, device, manager)
    vae = load_vae_file(files["vae"], device, manager.vae_dtype())
    vae.register_to_config(scaling_factor=LATENT_SCALE, shift_factor=LATENT_SHIFT)
    timers = {"unet": Timer(torch, device), "vae": Timer(torch, device), "text": Timer(torch, device)}
    timers["unet"].wrap(transformer)
    timers["vae"].wrap(vae)
    for network in encoder.models.values():
        timers["text"].wrap(network)
    pipe_class = getattr(diffusers, pipeline)
    text_slots = [name for name in pipe_class._get_signature_keys(pipe_class)[0] if "text_encoder" in name
                  or "tokenizer" in name]  # left empty: the embeddings are passed in
    pipe = pipe_class(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=vae, transformer=transformer,
                      **dict.fromkeys(text_slots))
    pipe.set_progress_bar_config(disable=True)
    sigmas = schedules.sigmas_for(sampling, "simple", args.steps, 1.0, "euler")

    def run_one(i):
        noise = torch.randn([1, 16, args.size // 8, args.size // 8], generator=torch.manual_seed(1000 + i))
        pipe(sigmas=sigmas[:-1].tolist(), height=args.size, width=args.size, output_type="np",
             **inputs(encoder, noise, lambda t: t.to(device, dtype)))

    times = timed_runs(args, timers, run_one)
    return summary(times, timers, args, peak_memory(torch, device), str(device))


def run_diffusers_z_image(args) -> dict:
    from engine.models.qwen_text import QwenTextEncoder, load_qwen_file
    from engine.models.z_image import load_z_image
    from engine.sampling.model_sampling import FlowModelSampling

    def text_encoder(files, device, manager):
        return QwenTextEncoder(load_qwen_file(files["text_encoders"], device, manager.bf16_or_fp32())[1])

    def inputs(encoder, noise, cast):
        embeds = cast(encoder.encode_from_tokens(encoder.tokenize(POSITIVE)))
        return {"prompt_embeds": [embeds[0]], "guidance_scale": 0.0, "latents": cast(noise)}

    return run_diffusers_dit(args, "ZImagePipeline", load_z_image, FlowModelSampling(Z_IMAGE_SHIFT, 1.0),
                             text_encoder, inputs)


def run_diffusers_flux(args) -> dict:
    from engine.models.clip import TextEncoder
    from engine.models.flux import load_flux, pack
    from engine.models.load import load_clip_file
    from engine.models.t5 import load_t5_file
    from engine.sampling.model_sampling import FluxModelSampling, flux_shift_for_size

    def text_encoder(files, device, manager):  # DualCLIPLoader type flux, with its dtypes
        return TextEncoder({"l": load_clip_file(files["clip_l"], device, manager.text_dtype()).model,
                            "t5xxl": load_t5_file(files["t5"], device, manager.bf16_or_fp32()).model}, "flux")

    def inputs(encoder, noise, cast):
        cond, pooled = encoder.encode_from_tokens(encoder.tokenize(POSITIVE), return_pooled=True)
        return {"prompt_embeds": cast(cond), "pooled_prompt_embeds": cast(pooled), "guidance_scale": FLUX_GUIDANCE,
                "latents": cast(pack(noise))}

    sampling = FluxModelSampling(flux_shift_for_size(args.size, args.size))  # ModelSamplingFlux's shift for this size
    return run_diffusers_dit(args, "FluxPipeline", load_flux, sampling, text_encoder, inputs)


DIFFUSERS_RUNS = {"sd15": run_diffusers, "z_image": run_diffusers_z_image, "flux": run_diffusers_flux}


def timed_runs(args, timers: dict, run_one) -> list[float]:
    """Seconds of each of args.prompts calls run_one(i) after one warm-up (which loads; the timers restart after
    it)."""
    times = []
    for i in range(args.prompts + 1):
        if i == 1:
            for t in timers.values():
                t.seconds, t.calls = 0.0, 0
        start = time.perf_counter()
        run_one(i)
        timers["unet"].sync()
        if i > 0:
            times.append(time.perf_counter() - start)
    return times


def summary(times, timers, args, peak, device) -> dict:
    per_prompt = sum(times) / len(times)
    compute = sum(t.seconds for t in timers.values()) / len(times)
    return {"device": device, "per_prompt_s": per_prompt, "step_s": timers["unet"].seconds / len(times) / args.steps,
            "compute_s": compute, "overhead_s": per_prompt - compute, "peak_bytes": peak,
            "unet_param_bytes": timers["unet"].parameter_bytes()}


CHECKPOINT = "bench.safetensors"


def model_files(args, models: Path | None = None) -> dict[str, Path]:
    """{key: file} the benchmark loads; the DiT families' files are <models>/<folder>/<name> (``models``: default
    --models) as their workflows name them, keyed by folder (FLUX's two text encoders by their fixture keys)."""
    if args.model == "sd15":
        return {"checkpoints": Path(args.checkpoint)}
    if args.model == "z_image":
        from tests.fixtures.z_image import DEFAULT_NAMES

        names = {folder: (folder, name) for folder, name in DEFAULT_NAMES.items()}
    else:
        from tests.fixtures.flux import DEFAULT_NAMES

        names = {"diffusion_models": ("diffusion_models", FLUX_FP8_NAME if args.fp8 else DEFAULT_NAMES["dev"]),
                 "clip_l": ("text_encoders", DEFAULT_NAMES["clip_l"]), "t5": ("text_encoders", DEFAULT_NAMES["t5"]),
                 "vae": ("vae", DEFAULT_NAMES["vae"])}
    return {key: Path(models or args.models) / folder / name for key, (folder, name) in names.items()}


def make_tiny_models(args) -> str:
    """A models folder of tiny generated files in the real layouts (tests/fixtures), written once per model."""
    import torch

    from tests.fixtures import flux, z_image

    models = Path(tempfile.gettempdir()) / f"comfyd-bench-tiny-{args.model.replace('_', '-')}"
    if not all(path.exists() for path in model_files(args, models).values()):
        if args.model == "z_image":
            z_image.install(models)
        else:
            flux.install(models)
            # the dev transformer's seed in fp8: both sides of an --fp8 run compute with these values
            flux.write_flux(models / "diffusion_models" / FLUX_FP8_NAME, dtype=torch.float8_e4m3fn)
    return str(models)


def make_tiny_checkpoint() -> str:
    from tests.fixtures.checkpoints import write_sd15

    path = Path(tempfile.gettempdir()) / "comfyd-bench-tiny-sd15.safetensors"
    if not path.exists():
        write_sd15(path, seed=0)
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=list(DIFFUSERS_RUNS), default="sd15")
    p.add_argument("--checkpoint", help="an SD1.x single-file checkpoint (default: a tiny generated one)")
    p.add_argument("--models", help="z_image / flux: a models folder holding the family's files "
                                    "(default: tiny generated ones)")
    p.add_argument("--fp8", action="store_true", help=f"flux: the transformer stored as float8_e4m3fn "
                                                      f"(diffusion_models/{FLUX_FP8_NAME}), weight_dtype default")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--prompts", type=int, default=5)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--phase", choices=["comfyd", "diffusers"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.fp8 and args.model != "flux":
        p.error("--fp8 is for --model flux")
    if args.phase:
        result = asyncio.run(run_comfyd(args)) if args.phase == "comfyd" else DIFFUSERS_RUNS[args.model](args)
        print(json.dumps(result))
        return
    if args.model != "sd15":
        args.models = os.path.abspath(args.models or make_tiny_models(args))
        source = ["--models", args.models] + (["--fp8"] if args.fp8 else [])
    else:
        args.checkpoint = os.path.abspath(args.checkpoint or make_tiny_checkpoint())
        source = ["--checkpoint", args.checkpoint]
    results = {}
    for phase in ("diffusers", "comfyd"):
        command = [sys.executable, __file__, "--phase", phase, "--model", args.model, *source, "--steps",
                   str(args.steps), "--size", str(args.size), "--prompts", str(args.prompts)] + (["--cpu"] if args.cpu else [])
        out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"{phase} run failed:\n{out.stderr}")
        results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
    base, ours = results["diffusers"], results["comfyd"]
    model_file = args.checkpoint if args.model == "sd15" else model_files(args)["diffusion_models"]
    print(f"{args.model} {model_file}  device {ours['device']}  {args.size}x{args.size}, {args.steps} steps, "
          f"{args.prompts} prompts (after one warm-up)")
    print(f"{'':24}{'diffusers':>14}{'comfyd':>14}{'comfyd/diffusers':>18}")
    rows = [("seconds per step", "step_s", "{:.4f}"), ("seconds per prompt", "per_prompt_s", "{:.4f}"),
            ("model compute / prompt", "compute_s", "{:.4f}"), ("overhead / prompt (s)", "overhead_s", "{:.4f}"),
            ("UNet/DiT params (MiB)", "unet_param_bytes", "{:.2f}"), ("peak memory (MiB)", "peak_bytes", "{:.0f}")]
    for label, key, fmt in rows:
        scale = 1 / 2**20 if key.endswith("bytes") else 1
        a, b = base[key] * scale, ours[key] * scale
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"{label:24}{fmt.format(a):>14}{fmt.format(b):>14}{ratio:>18}")
    print(f"comfyd overhead outside model compute: {ours['overhead_s'] * 1000:.1f} ms per prompt (goal < 20 ms)")


if __name__ == "__main__":
    main()
