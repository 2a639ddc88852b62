"""The official workflow templates, converted from their UI format with the app's own /object_info, shrunk to
64 px and 2 steps, run end to end on tiny random-weight stand-ins of the models they name.

A template listed in WAITING needs node types comfyd does not have yet: it is an expected failure (strict), so the
suite fails once those nodes land and it runs, until it moves to TEMPLATES.
"""
from __future__ import annotations

import pytest
from PIL import Image

from engine import Settings
from engine.workflow import UnknownNodeTypes, to_api_prompt
from tests.conftest import of_type, run_prompt, wait_history
from tests.fixtures.templates import load_template, missing_fixtures, needed_files, provide_files, shrink

TEMPLATES = [
    # SD1.x / SD2.x examples (comfyui-workflow-templates 0.1.95)
    "default", "image2image", "inpaint_example", "inpaint_model_outpainting", "embedding_example",
    "hiresfix_latent_workflow", "latent_upscale_different_prompt_model", "area_composition",
    "area_composition_square_area_for_subject", "lora", "lora_multiple", "controlnet_example", "depth_controlnet",
    "depth_t2i_adapter", "mixing_controlnets", "2_pass_pose_worship", "esrgan_example", "hiresfix_esrgan_workflow",
    "gligen_textbox_example",
    # SDXL and utility templates (the current package)
    "sdxl_simple_example", "sdxlturbo_example", "sdxl_refiner_prompt_example", "sdxl_revision_text_prompts",
    "sdxl_revision_zero_positive", "image_sdxl_simple", "basic_mask_operations_and_compositing",
    # other model families
    "image_z_image_turbo", "flux_schnell", "flux_dev_checkpoint_example", "flux_dev_full_text_to_image",
    "flux_schnell_full_text_to_image", "flux1_krea_dev", "flux_kontext_dev_basic", "flux_fill_inpaint_example",
    "flux_fill_outpaint_example", "flux_canny_model_example", "flux_redux_model_example", "sd3.5_simple_example",
]
# {template: what it waits for}; each raises UnknownNodeTypes until then.
WAITING = {
    "image_z_image": "ResolutionSelector, SaveImageAdvanced (nodes of upstream's current release)",
    "utility_image_stitch": "ResizeImageMaskNode",
    "utility_interpolation_image_upscale": "ImageCompare",
}
IMAGE_OUTPUTS = {"SaveImage", "PreviewImage", "MaskPreview"}


@pytest.fixture(scope="module")
def base_directory(tmp_path_factory):
    # One data folder for the module, so that the tiny checkpoints several templates share are written once.
    return tmp_path_factory.mktemp("templates")


@pytest.fixture
def settings(base_directory) -> Settings:
    return Settings(base_directory=base_directory, cpu=True)


@pytest.fixture(scope="module")
def object_info_cache() -> dict:
    return {}


@pytest.fixture
async def object_info(client, object_info_cache) -> dict:
    if not object_info_cache:
        object_info_cache.update(await (await client.get("/object_info")).json())
    return object_info_cache


def image_outputs(prompt: dict) -> set[str]:
    return {node_id for node_id, node in prompt.items() if node["class_type"] in IMAGE_OUTPUTS}


@pytest.mark.parametrize("name", TEMPLATES + [
    pytest.param(name, marks=pytest.mark.xfail(raises=UnknownNodeTypes, strict=True, reason=f"waits for {needs}"))
    for name, needs in WAITING.items()])
async def test_template_runs(name, client, settings, object_info):
    workflow = load_template(name)
    assert workflow is not None, f"template {name} is neither in the installed packages nor in the 0.1.95 release"
    prompt = shrink(to_api_prompt(workflow, object_info), object_info)
    files = needed_files(prompt)
    unfakeable = missing_fixtures(files)
    assert not unfakeable, f"no tiny fixture for: {', '.join(unfakeable)}"
    provide_files(settings.base_directory, files)

    prompt_id, messages = await run_prompt(client, prompt, client_id=name)
    errors = of_type(messages, "execution_error")
    assert not errors, errors[0]["exception_message"] + "".join(errors[0]["traceback"])
    entry = await wait_history(client, prompt_id)
    assert entry["status"]["status_str"] == "success"
    outputs = {node_id for node_id, out in entry["outputs"].items() if out.get("images")}
    assert image_outputs(prompt) <= outputs
    for node_id in outputs:
        for image in entry["outputs"][node_id]["images"]:
            folder = "output" if image["type"] == "output" else "temp"
            with Image.open(settings.base_directory / folder / image["subfolder"] / image["filename"]) as img:
                assert 8 <= min(img.size) and max(img.size) <= 256, (node_id, img.size)
