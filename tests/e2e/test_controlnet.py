"""ControlNet and T2I-Adapter workflows through the real app on tiny random-weight files.

The template tests rebuild ComfyUI's ControlNet templates (controlnet_example, 2_pass_pose_worship,
depth_controlnet, depth_t2i_adapter, mixing_controlnets) node for node in API form, at 64 px and 2 steps.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nodes.controlnet
from tests.conftest import of_type, run_prompt
from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures import checkpoints, controlnets
from tests.upstream import declaration

COMPARED_FIELDS = ("input", "input_order", "output", "output_is_list", "output_name", "display_name", "category",
                   "output_node", "description", "python_module", "output_tooltips")
STEPS = 2


@pytest.fixture
def registry(registry):
    """The app's registry, with the ControlNet nodes whether or not they are built in yet."""
    if "ControlNetLoader" not in registry:
        registry.register_module(nodes.controlnet)
    return registry


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> Path:
    """Every model file and input image the workflows below name, written once (models/..., input/...)."""
    root = tmp_path_factory.mktemp("controlnet-files")
    models = root / "models"
    for folder in ("checkpoints", "controlnet", "vae"):
        (models / folder).mkdir(parents=True)
    checkpoints.write_sd15(models / "checkpoints" / "sd15.safetensors", seed=0)
    checkpoints.write_sd15(models / "checkpoints" / "sd15-other.safetensors", seed=1)
    controlnets.write_sd15_four_levels(models / "checkpoints" / "sd15-four-levels.safetensors", seed=0)
    controlnets.write_controlnet(models / "controlnet" / "scribble.safetensors", "sd1", seed=0)
    controlnets.write_controlnet(models / "controlnet" / "pose.safetensors", "sd1", seed=1, prefix="")
    controlnets.write_t2i_adapter(models / "controlnet" / "t2i-depth.safetensors", seed=2, hint_channels=1)
    controlnets.write_control_lora(models / "controlnet" / "control-lora-canny.safetensors", "sd1", seed=4)
    controlnets.write_control_lora(models / "controlnet" / "control-lora-canny-xl.safetensors", "sdxl", seed=4)
    vae = checkpoints.vae_shapes(checkpoints.TINY["sd1"].vae, prefix="")
    checkpoints.save(models / "vae" / "vae.safetensors", checkpoints.fill(vae, seed=3))
    (root / "input").mkdir()
    square = np.zeros((64, 64, 3), np.uint8)
    square[16:48, 20:44] = 255
    Image.fromarray(square).save(root / "input" / "square.png")
    ramp = np.broadcast_to(np.linspace(0, 255, 80, dtype=np.uint8)[:, None, None], (80, 48, 3))
    Image.fromarray(np.ascontiguousarray(ramp)).save(root / "input" / "depth.png")  # another size: resized to fit
    return root


@pytest.fixture
def files(settings, made):
    shutil.copytree(made, settings.base_directory, dirs_exist_ok=True)
    return settings


def encode(node_id, clip, text="a photo"):
    return {node_id: {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": clip}}}


def ksampler(model, positive, negative, latent, *, sampler="euler", scheduler="normal", cfg=7.0, denoise=1.0,
             seed=5):
    return {"class_type": "KSampler", "inputs": {
        "seed": seed, "steps": STEPS, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
        "denoise": denoise, "model": model, "positive": positive, "negative": negative, "latent_image": latent}}


def apply(positive, negative, control_net, image, vae=None, strength=1.0):
    inputs = {"positive": positive, "negative": negative, "control_net": control_net, "image": image,
              "strength": strength, "start_percent": 0.0, "end_percent": 1.0}
    if vae is not None:
        inputs["vae"] = vae
    return {"class_type": "ControlNetApplyAdvanced", "inputs": inputs}


def node(class_type, **inputs):
    return {"class_type": class_type, "inputs": inputs}


def empty(size=64):
    return node("EmptyLatentImage", width=size, height=size, batch_size=1)


def controlnet_example() -> dict:
    return {
        "14": node("CheckpointLoaderSimple", ckpt_name="sd15.safetensors"),
        **encode("6", ["14", 1], "a boy holding a crate"), **encode("7", ["14", 1], "blurry"),
        "5": empty(),
        "11": node("LoadImage", image="square.png"),
        "34": node("Canny", image=["11", 0], low_threshold=0.35, high_threshold=0.8),
        "35": node("PreviewImage", images=["34", 0]),
        "12": node("ControlNetLoader", control_net_name="scribble.safetensors"),
        "32": apply(["6", 0], ["7", 0], ["12", 0], ["34", 0]),
        "3": ksampler(["14", 0], ["32", 0], ["32", 1], ["5", 0], cfg=6.0),
        "13": node("VAELoader", vae_name="vae.safetensors"),
        "8": node("VAEDecode", samples=["3", 0], vae=["13", 0]),
        "9": node("SaveImage", images=["8", 0], filename_prefix="controlnet_example"),
    }


def two_pass_pose_worship() -> dict:
    return {
        "47": node("CheckpointLoaderSimple", ckpt_name="sd15.safetensors"),
        "53": node("CheckpointLoaderSimple", ckpt_name="sd15-other.safetensors"),
        "37": node("CLIPSetLastLayer", clip=["53", 1], stop_at_clip_layer=-2),
        "38": node("CLIPSetLastLayer", clip=["47", 1], stop_at_clip_layer=-2),
        **encode("54", ["38", 0], "a portrait"), **encode("55", ["38", 0], "bad hands"),
        **encode("56", ["37", 0], "a portrait"), **encode("57", ["37", 0], "bad hands"),
        "11": node("ControlNetLoader", control_net_name="pose.safetensors"),
        "46": node("LoadImage", image="square.png"),
        "45": apply(["54", 0], ["55", 0], ["11", 0], ["46", 0]),
        "5": empty(),
        "50": ksampler(["47", 0], ["45", 0], ["45", 1], ["5", 0], sampler="dpmpp_2m", scheduler="karras"),
        "13": node("VAELoader", vae_name="vae.safetensors"),
        "49": node("VAEDecode", samples=["50", 0], vae=["13", 0]),
        "48": node("PreviewImage", images=["49", 0]),
        "14": node("LatentUpscale", samples=["50", 0], upscale_method="nearest-exact", width=96, height=96,
                   crop="disabled"),
        "58": ksampler(["53", 0], ["56", 0], ["57", 0], ["14", 0], cfg=6.0, denoise=0.5),
        "52": node("VAEDecode", samples=["58", 0], vae=["13", 0]),
        "51": node("SaveImage", images=["52", 0], filename_prefix="pose"),
    }


def depth(control_net="scribble.safetensors", ckpt="sd15.safetensors", *, t2i=False) -> dict:
    """depth_controlnet, or with `t2i` depth_t2i_adapter (which also wires the VAE into the apply node)."""
    return {
        "34": node("CheckpointLoaderSimple", ckpt_name=ckpt),
        **encode("24", ["34", 1], "a white building"), **encode("7", ["34", 1], "text, error"),
        "20": node("LoadImage", image="depth.png"),
        "45": node("ControlNetLoader", control_net_name=control_net),
        "42": apply(["24", 0], ["7", 0], ["45", 0], ["20", 0], vae=["34", 2] if t2i else None),
        "5": empty(),
        "3": ksampler(["34", 0], ["42", 0], ["42", 1], ["5", 0], sampler="euler_ancestral"),
        "8": node("VAEDecode", samples=["3", 0], vae=["34", 2]),
        "9": node("SaveImage", images=["8", 0], filename_prefix="depth"),
    }


def mixing_controlnets() -> dict:
    return {
        "31": node("CheckpointLoaderSimple", ckpt_name="sd15.safetensors"),
        **encode("24", ["31", 1], "a white cat"), **encode("7", ["31", 1], "blurry"),
        "15": node("VAELoader", vae_name="vae.safetensors"),
        "20": node("LoadImage", image="square.png"),
        "21": node("LoadImage", image="depth.png"),
        "26": node("ControlNetLoader", control_net_name="scribble.safetensors"),
        "35": node("ControlNetLoader", control_net_name="pose.safetensors"),
        "34": apply(["24", 0], ["7", 0], ["35", 0], ["21", 0]),
        "36": apply(["34", 0], ["34", 1], ["26", 0], ["20", 0]),
        "5": empty(),
        "3": ksampler(["31", 0], ["36", 0], ["36", 1], ["5", 0], sampler="dpmpp_sde", scheduler="karras", cfg=6.0),
        "8": node("VAEDecode", samples=["3", 0], vae=["15", 0]),
        "9": node("SaveImage", images=["8", 0], filename_prefix="mixing"),
    }


def without_control(prompt: dict, sampler: str, apply_node: str) -> dict:
    """The same workflow with the sampler reading the text encodes the apply node was given."""
    plain = json.loads(json.dumps(prompt))
    inputs = plain[apply_node]["inputs"]
    plain[sampler]["inputs"].update(positive=inputs["positive"], negative=inputs["negative"])
    return plain


@pytest.mark.parametrize("build, sampler, apply_node, output, size", [
    (controlnet_example, "3", "32", "9", 64),
    (two_pass_pose_worship, "50", "45", "51", 96),
    (depth, "3", "42", "9", 64),
    (lambda: depth("t2i-depth.safetensors", "sd15-four-levels.safetensors", t2i=True), "3", "42", "9", 64),
    (mixing_controlnets, "3", "36", "9", 64),
], ids=["controlnet_example", "2_pass_pose_worship", "depth_controlnet", "depth_t2i_adapter", "mixing_controlnets"])
async def test_templates_run_and_the_control_changes_the_image(client, files, build, sampler, apply_node, output,
                                                               size):
    prompt = build()
    controlled = saved(files, await run_ok(client, prompt), output)[0]
    plain = saved(files, await run_ok(client, without_control(prompt, sampler, apply_node)), output)[0]
    assert controlled.shape == (size, size, 3) and controlled.std() > 0
    assert not np.array_equal(controlled, plain)


async def test_strength_zero_gives_the_uncontrolled_image(client, files):
    prompt = depth()
    prompt["42"]["inputs"]["strength"] = 0.0
    zero = saved(files, await run_ok(client, prompt), "9")[0]
    plain = saved(files, await run_ok(client, without_control(prompt, "3", "42")), "9")[0]
    assert np.array_equal(zero, plain)


async def test_a_control_outside_its_step_range_changes_nothing(client, files):
    prompt = depth()
    # sigmas 1.6 .. 0.34: between the two steps' sigmas (14.6 and 0.03 for "normal" with 2 steps)
    prompt["42"]["inputs"].update(start_percent=0.5, end_percent=0.9)
    late = saved(files, await run_ok(client, prompt), "9")[0]
    plain = saved(files, await run_ok(client, without_control(prompt, "3", "42")), "9")[0]
    assert np.array_equal(late, plain)


async def test_old_apply_node_on_the_txt2img_workflow(client, files):
    prompt = default_workflow("sd15.safetensors", steps=STEPS, prefix="old")
    prompt.update({"10": node("LoadImage", image="square.png"),
                   "11": node("ControlNetLoader", control_net_name="scribble.safetensors"),
                   "12": node("ControlNetApply", conditioning=["6", 0], control_net=["11", 0], image=["10", 0],
                              strength=0.8)})
    plain = saved(files, await run_ok(client, prompt))[0]
    prompt["3"]["inputs"]["positive"] = ["12", 0]
    controlled = saved(files, await run_ok(client, prompt))[0]
    assert not np.array_equal(controlled, plain)


async def test_a_control_lora_gets_its_own_network_for_each_model(client, files):
    """The same Control-LoRA on two checkpoints: each image is the one that checkpoint gives when it is the
    first and only one the Control-LoRA meets (after /free unloads everything)."""
    def controlled(ckpt):
        return depth("control-lora-canny.safetensors", ckpt)

    first = saved(files, await run_ok(client, controlled("sd15.safetensors")), "9")[0]
    other = saved(files, await run_ok(client, controlled("sd15-other.safetensors")), "9")[0]
    again = saved(files, await run_ok(client, controlled("sd15.safetensors")), "9")[0]
    plain = saved(files, await run_ok(client, without_control(controlled("sd15.safetensors"), "3", "42")), "9")[0]
    assert (await client.post("/free", json={"unload_models": True})).status == 200
    other_alone = saved(files, await run_ok(client, controlled("sd15-other.safetensors")), "9")[0]
    assert np.array_equal(first, again) and np.array_equal(other, other_alone)
    assert not np.array_equal(first, plain) and not np.array_equal(first, other)


async def test_a_control_lora_for_another_model_family_fails_the_sampler_clearly(client, files):
    prompt_id, messages = await run_prompt(client, depth("control-lora-canny-xl.safetensors"))
    [error] = of_type(messages, "execution_error")
    assert error["prompt_id"] == prompt_id and (error["node_id"], error["node_type"]) == ("3", "KSampler")
    assert error["exception_message"].startswith(
        "control-lora-canny-xl.safetensors: Control-LoRA does not fit the model it is applied to")
    assert error["traceback"] and not of_type(messages, "execution_success")
    await run_ok(client, depth())  # the worker goes on with the next prompt


async def test_canny_node_finds_the_square_outline(client, files):
    prompt = {"1": node("LoadImage", image="square.png"),
              "2": node("Canny", image=["1", 0], low_threshold=0.4, high_threshold=0.8),
              "3": node("SaveImage", images=["2", 0], filename_prefix="edges")}
    edges = saved(files, await run_ok(client, prompt), "3")[0]
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) == {0, 255}
    assert (edges[..., 0] == edges[..., 1]).all() and (edges[..., 0] == edges[..., 2]).all()
    rows, cols = np.nonzero(edges[..., 0])
    # the outline of the square at rows 16..47, columns 20..43, one pixel either side of the step
    assert rows.min() in (15, 16) and rows.max() in (47, 48) and cols.min() in (19, 20) and cols.max() in (43, 44)
    assert edges[24:40, 26:38].max() == 0 and edges[:8].max() == 0


async def test_missing_controlnet_file_is_a_validation_error(client, files):
    prompt = depth("nope.safetensors")
    resp = await client.post("/prompt", json={"prompt": prompt})
    assert resp.status == 400
    assert (await resp.json())["node_errors"]["45"]["errors"][0]["type"] == "value_not_in_list"


@pytest.mark.parametrize("name", sorted(nodes.controlnet.NODE_CLASS_MAPPINGS))
async def test_declarations_match_upstream(client, name):
    upstream = declaration(name)
    ours = (await (await client.get(f"/object_info/{name}")).json())[name]
    if name.endswith("Loader"):  # the capture was taken with no ControlNet files
        ours["input"]["required"]["control_net_name"] = [[]]
    for field in COMPARED_FIELDS:
        assert json.dumps(ours.get(field), sort_keys=True) == json.dumps(upstream.get(field), sort_keys=True), field
    assert bool(ours.get("deprecated")) == bool(upstream.get("deprecated"))  # V3 nodes also list it when false
