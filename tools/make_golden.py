#!/usr/bin/env python3
"""Regenerate the parity golden images by running tests/golden/cases.py on a ComfyUI-compatible server.

The server (upstream ComfyUI, or comfyd itself for a comparison run) must already be running with the
checkpoint of cases.CHECKPOINT in its models/checkpoints/ and the seeded model files the cases load, written by
    python -m tests.golden.checkpoint <models>
    python tests/golden/lora.py <models>/loras
    python -m tests.golden.controlnet <models>/controlnet
    python -m tests.golden.control_lora <models>/controlnet
    python -m tests.golden.upscaler <models>/upscale_models
    python -m tests.golden.adapter <models>
    python -m tests.golden.inpaint <models>/checkpoints
This script only talks HTTP, so it cannot place model files on the server: it checks /models/<folder> for the
files the chosen cases load, uploads the input images, queues each case, waits on /history and downloads the
saved images with /view into OUT as <case>_<i>.png (.webp, ...: as the server named them), plus manifest.json
(sizes, frame counts of animations, sha256, server versions, the digests of the input images and model files the
images assume, and the text of cases that end in a PreviewAny).

    python tools/make_golden.py --url http://127.0.0.1:8188 --out tests/golden/sd15 [--case NAME ...]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.golden import (  # noqa: E402  (after the path fix: a script)
    adapter, cases, checkpoint, control_lora, controlnet, inpaint, lora, upscaler)

# {models folder: (the node input naming a file of it, how to write the parity files there)}
MODEL_INPUTS = {
    "checkpoints": ("ckpt_name", "python -m tests.golden.checkpoint <models> && "
                    "python -m tests.golden.inpaint <models>/checkpoints"),
    "loras": ("lora_name", "python tests/golden/lora.py <models>/loras"),
    "controlnet": ("control_net_name", "python -m tests.golden.controlnet <models>/controlnet && "
                   "python -m tests.golden.control_lora <models>/controlnet && "
                   "python -m tests.golden.adapter <models>"),
    "upscale_models": ("model_name", "python -m tests.golden.upscaler <models>/upscale_models"),
    "diffusion_models": ("unet_name", "python -m tests.golden.adapter <models> && "
                         "python -m tests.golden.checkpoint <models>"),
}


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 60.0) -> bytes:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def get_json(base: str, path: str):
    return json.loads(request(base + path))


def post_json(base: str, path: str, body: dict):
    return json.loads(request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}))


def upload_image(base: str, path: Path) -> dict:
    """POST /upload/image as multipart form data, overwriting any file of the same name."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'.encode(),
        (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
         'Content-Type: image/png\r\n\r\n').encode() + path.read_bytes() + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    body = b"".join(parts)
    return json.loads(request(base + "/upload/image", body,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"}))


def wait_for(base: str, prompt_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = get_json(base, f"/history/{prompt_id}")
        if prompt_id in history:
            return history[prompt_id]
        time.sleep(0.2)
    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")


def model_files(prompt: dict, node_input: str) -> set[str]:
    return {node["inputs"][node_input] for node in prompt.values() if node_input in node["inputs"]}


def check_models(base: str, names: list[str]) -> None:
    """Fail before queueing anything when the server lacks a checkpoint, LoRA, ControlNet, UNet or upscale model
    file that one of the cases loads."""
    prompts = [cases.CASES[name]() for name in names]
    for folder, (node_input, command) in MODEL_INPUTS.items():
        needed = set().union(*(model_files(prompt, node_input) for prompt in prompts))
        missing = sorted(needed - set(get_json(base, f"/models/{folder}"))) if needed else []
        if missing:
            raise SystemExit(f"the server's models/{folder} lacks {', '.join(missing)}; write them there with "
                             f"`{command}`")


def run_case(base: str, name: str, timeout: float) -> dict:
    """Queue one case and return its output node's UI output: {"images": PNG bytes in order} for a SaveImage,
    {"text": [...]} for a PreviewAny."""
    queued = post_json(base, "/prompt", {"prompt": cases.CASES[name](), "client_id": "make_golden"})
    entry = wait_for(base, queued["prompt_id"], timeout)
    status = entry.get("status", {})
    if status.get("status_str") != "success":
        errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
        raise RuntimeError(f"case {name} failed: {errors or status}")
    output = entry["outputs"][cases.OUTPUT_NODE]
    if "text" in output:
        return {"text": output["text"]}
    return {"images": [(Path(i["filename"]).suffix, request(base + "/view?" + urllib.parse.urlencode(
        {"filename": i["filename"], "subfolder": i["subfolder"], "type": i["type"]}))) for i in output["images"]]}


def image_entry(data: bytes) -> dict:
    """The manifest's description of an image file: its size, and its frame count when it is an animation."""
    with Image.open(io.BytesIO(data)) as image:
        entry = {"width": image.width, "height": image.height}
        if getattr(image, "n_frames", 1) > 1:
            entry["frames"] = image.n_frames
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, default=cases.GOLDEN_DIR)
    parser.add_argument("--case", action="append", choices=sorted(cases.CASES), help="only these (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one case")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")

    names = args.case or list(cases.CASES)
    stats = get_json(base, "/system_stats")["system"]
    check_models(base, names)
    for image in cases.INPUT_IMAGES:
        upload_image(base, image)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({
        "server": {k: stats.get(k) for k in ("comfyui_version", "pytorch_version", "python_version", "argv")},
        "checkpoint": checkpoint.fingerprints(),
        "inputs": {image.name: hashlib.sha256(image.read_bytes()).hexdigest() for image in cases.INPUT_IMAGES},
        "loras": {name: lora.fingerprint(seed) for name, seed in lora.PARITY_LORAS.items()},
        "controlnets": {name: controlnet.fingerprint(seed) for name, seed in controlnet.PARITY_CONTROLNETS.items()},
        "control_loras": control_lora.fingerprints(),
        "upscale_models": {name: upscaler.fingerprint(spec) for name, spec in upscaler.PARITY_UPSCALERS.items()},
        "adapter_files": adapter.fingerprints(),
        "inpaint_checkpoints": inpaint.fingerprints(),
    })
    results = manifest.setdefault("cases", {})
    for name in names:
        started = time.monotonic()
        output = run_case(base, name, args.timeout)
        if "text" in output:  # recorded as it is
            results[name] = output
            print(f"{name}: {output['text']!r} in {time.monotonic() - started:.1f}s", flush=True)
            continue
        files = []
        for i, (suffix, data) in enumerate(output["images"]):
            path = args.out / f"{name}_{i}{suffix}"
            path.write_bytes(data)
            files.append({"file": path.name, **image_entry(data), "sha256": hashlib.sha256(data).hexdigest()})
        results[name] = files
        print(f"{name}: {len(files)} image(s) in {time.monotonic() - started:.1f}s", flush=True)
    manifest["cases"] = {name: results[name] for name in cases.CASES if name in results}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
