"""Parity with upstream ComfyUI: every case of tests/golden/cases.py, run on comfyd, matches upstream's images.

The golden PNGs in tests/golden/sd15 were made by tools/make_golden.py against upstream ComfyUI 0.3.64 on the
CPU (fp32) with the checkpoint of tests/golden/checkpoint.py and the seeded files of
tests/golden/{lora,controlnet,control_lora,adapter,upscaler,inpaint}.py (upstream applied every key of the LoRAs;
LoraLoaderModelOnly leaves the text-encoder keys out, as it should, and the CLIP half of a LoRA alone moves the
image by ~10/255 on average; upstream loaded every ControlNet and adapter key without a warning and built the
Control-LoRA's network from the checkpoint's UNet; its upscale nodes ran spandrel 0.4.2; it detected the
9-channel checkpoint as an SD1.5 inpainting model). Here the same script
runs the same cases against a real comfyd server (the app on a loopback port), so upload, /prompt, /history and
/view are exercised exactly as against upstream. Tolerance per image, on 0..255
pixels: max |diff| <= 2 (float rounding across a different attention kernel and op order can flip an 8-bit
truncation), and mean |diff| <= 0.05: with random weights a wrong prompt weight moves few pixels far (1.3 vs 1.2
moves the mean by ~0.2), so the mean is the sharper check. Animations are compared frame by frame, their frame
durations and loop count exactly.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from PIL import Image, ImageSequence

from engine import Settings
from server.app import create_app
from tests.golden import adapter, cases, checkpoint, control_lora, controlnet, inpaint, lora, upscaler

MAKE_GOLDEN = Path(__file__).parents[2] / "tools/make_golden.py"
MAX_DIFF = 2
MAX_MEAN_DIFF = 0.05
GOLDEN = json.loads((cases.GOLDEN_DIR / "manifest.json").read_text())

# torchsde warns when the Brownian tree is queried at sigma_max as a float just above its float32 end point;
# upstream ComfyUI emits the same warning for dpmpp_2m_sde.
pytestmark = pytest.mark.filterwarnings("ignore:Should have tb<=t1:UserWarning")


def load_make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", MAKE_GOLDEN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# {case: the case it would equal if its LoRA / ControlNet / adapter were ignored, or its inpainting checkpoint's
# mask and masked-image channels}: that file must move the image far past the tolerance.
BASELINES = {"lora_0_8": "euler_normal", "lora_chain": "lora_0_8", "lora_model_only_neg_0_5": "euler_normal",
             "controlnet_advanced": "euler_normal", "controlnet_chain": "euler_normal",
             "control_lora": "euler_normal",
             "t2i_adapter_light": "unet_two_blocks",
             "inpaint_model_vae_encode": "inpaint_vae_encode_grow_6",
             "inpaint_model_noise_mask": "inpaint_noise_mask", "inpaint_model_txt2img": "euler_normal",
             "model_merge_simple_0_4": "euler_normal", "clip_merge_simple_0_7": "euler_normal"}


@pytest.fixture(scope="session")
def parity_base(tmp_path_factory) -> Path:
    """A comfyd base directory holding the checkpoint and the model files the golden images were made with."""
    base = tmp_path_factory.mktemp("parity")
    checkpoint.write_parity_files(base / "models")
    lora.write_parity_loras(base / "models" / "loras")
    controlnet.write_parity_controlnets(base / "models" / "controlnet")
    control_lora.write_parity_control_loras(base / "models" / "controlnet")
    upscaler.write_parity_upscalers(base / "models" / "upscale_models")
    adapter.write_parity_files(base / "models")
    inpaint.write_parity_inpaint(base / "models" / "checkpoints")
    return base


@contextmanager
def serve(settings: Settings):
    """Run the comfyd app on a free loopback port in a background event loop; yield its base URL."""
    ready, box = threading.Event(), {}

    async def main():
        runner = web.AppRunner(create_app(settings))
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box.update(url="http://%s:%d" % runner.addresses[0][:2], loop=asyncio.get_running_loop(),
                       stop=asyncio.Event())
        finally:
            ready.set()  # also on failure, so the caller does not wait out the timeout
        try:
            await box["stop"].wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(60) and "url" in box, "comfyd did not start"
    try:
        yield box["url"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(60)


@pytest.fixture(scope="module")
def comfyd_outputs(parity_base, tmp_path_factory) -> Path:
    """Every case run once on comfyd by tools/make_golden.py; the folder of its PNGs and manifest."""
    out = tmp_path_factory.mktemp("comfyd-parity")
    with serve(Settings(base_directory=parity_base, cpu=True)) as url:
        assert load_make_golden().main(["--url", url, "--out", str(out), "--timeout", "120"]) == 0
    return out


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def frames(path: Path) -> tuple[list[np.ndarray], list, object]:
    """Every frame of an image file (one for a still image), the frames' durations and the loop count."""
    with Image.open(path) as image:
        shown = [(np.asarray(frame.convert("RGB"), dtype=np.int16), frame.info.get("duration"))
                 for frame in ImageSequence.Iterator(image)]
        return [f for f, _ in shown], [d for _, d in shown], image.info.get("loop")


def test_golden_data_covers_every_case_and_is_intact():
    assert list(GOLDEN["cases"]) == list(cases.CASES)
    assert GOLDEN["checkpoint"] == checkpoint.fingerprints()
    # the inputs and model files the tests hand comfyd are those the golden images were made from
    assert GOLDEN["inputs"] == {i.name: hashlib.sha256(i.read_bytes()).hexdigest() for i in cases.INPUT_IMAGES}
    assert GOLDEN["loras"] == {name: lora.fingerprint(seed) for name, seed in lora.PARITY_LORAS.items()}
    assert GOLDEN["controlnets"] == {name: controlnet.fingerprint(seed)
                                     for name, seed in controlnet.PARITY_CONTROLNETS.items()}
    assert GOLDEN["control_loras"] == control_lora.fingerprints()
    assert GOLDEN["upscale_models"] == {name: upscaler.fingerprint(spec)
                                        for name, spec in upscaler.PARITY_UPSCALERS.items()}
    assert GOLDEN["adapter_files"] == adapter.fingerprints()
    assert GOLDEN["inpaint_checkpoints"] == inpaint.fingerprints()
    for files in GOLDEN["cases"].values():
        for f in files if isinstance(files, list) else ():  # text cases hold their text
            data = (cases.GOLDEN_DIR / f["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f["sha256"], f["file"]


@pytest.mark.parametrize(("case", "baseline"), BASELINES.items())
def test_model_file_cases_differ_from_their_graph_without_the_file(case, baseline):
    assert mean_difference(case, baseline) > 100 * MAX_MEAN_DIFF


# {case: the same graph without its model patch node, or with a plain CFGGuider}: on upstream the patch (guider)
# moved the image, some only gently (RescaleCFG by 0.7 / 255 on average), yet all well past the tolerance.
PATCHED = {**dict.fromkeys(["rescale_cfg_0_7", "cfg_zero_star", "cfg_norm_0_8", "mahiro", "tcfg", "apg",
                            "epsilon_scaling_1_05", "fresca", "unet_self_attention_multiply",
                            "unet_cross_attention_multiply", "clip_attention_multiply", "perp_neg_patch",
                            "sampling_discrete_v_zsnr", "sampling_discrete_x0", "sampling_discrete_img_to_img",
                            "sampling_edm_eps_normal", "latent_tonemap_reinhard", "latent_sharpen",
                            "guidance_sharpen", "guidance_tonemap_reinhard", "renorm_cfg", "hypertile", "tome_0_5"],
                           "euler_normal"),
           **dict.fromkeys(["freeu", "freeu_v2", "perturbed_attention_3", "self_attention_guidance",
                            "deep_shrink_after_skip", "deep_shrink_before_skip"], "unet_640"),
           **dict.fromkeys(["dual_cfg_regular", "dual_cfg_nested", "perp_neg_guider"], "cfg_guider")}


@pytest.mark.parametrize("case, baseline", PATCHED.items())
def test_patched_cases_differ_from_the_unpatched_graph(case, baseline):
    def sampling(name):
        return {k: v for k, v in cases.CASES[name]()["3"]["inputs"].items() if k != "model"}

    assert sampling(case) == sampling(baseline)
    assert mean_difference(case, baseline) > 10 * MAX_MEAN_DIFF


def mean_difference(case: str, other: str) -> float:
    [ours], [theirs] = GOLDEN["cases"][case], GOLDEN["cases"][other]
    return float(np.abs(pixels(cases.GOLDEN_DIR / ours["file"]) - pixels(cases.GOLDEN_DIR / theirs["file"])).mean())


@pytest.mark.parametrize("case", list(cases.CASES))
def test_comfyd_matches_upstream(case, comfyd_outputs):
    ours = json.loads((comfyd_outputs / "manifest.json").read_text())["cases"][case]
    golden = GOLDEN["cases"][case]
    if isinstance(golden, dict):  # a PreviewAny's text
        assert ours == golden
        return
    assert [(Path(f["file"]).suffix, f["width"], f["height"], f.get("frames")) for f in ours] == \
        [(Path(f["file"]).suffix, f["width"], f["height"], f.get("frames")) for f in golden]
    diffs = []
    for o, g in zip(ours, golden):
        (our_frames, *our_timing), (their_frames, *their_timing) = (frames(comfyd_outputs / o["file"]),
                                                                    frames(cases.GOLDEN_DIR / g["file"]))
        assert our_timing == their_timing, f"{g['file']}: frame durations and loop count"
        diffs.append((g["file"], [np.abs(a - b) for a, b in zip(our_frames, their_frames)]))
    summary = ", ".join(f"max {int(d.max())} mean {d.mean():.4f}" for _, per_frame in diffs for d in per_frame)
    print(f"parity {case}: {summary}")
    for name, per_frame in diffs:
        for d in per_frame:
            assert d.max() <= MAX_DIFF and d.mean() <= MAX_MEAN_DIFF, f"{name}: {summary}"
