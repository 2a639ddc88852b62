"""GLIGEN text boxes end to end: GLIGENLoader + GLIGENTextBoxApply through the real app on a tiny SD1.5
checkpoint and a tiny GLIGEN file made for it."""
from __future__ import annotations

import json

import numpy as np
import pytest

import nodes.gligen
from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures.checkpoints import write_sd15
from tests.fixtures.gligen import write_gligen
from tests.upstream import declaration



@pytest.fixture
def registry(registry):
    if "GLIGENLoader" not in registry:  # until nodes.gligen is a built-in module
        registry.register_module(nodes.gligen)
    return registry


@pytest.fixture
def files(settings):
    models = settings.base_directory / "models"
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    (models / "gligen").mkdir(parents=True, exist_ok=True)
    write_sd15(models / "checkpoints" / "tiny-sd15.safetensors")
    write_gligen(models / "gligen" / "tiny-gligen.safetensors")
    return "tiny-sd15.safetensors", "tiny-gligen.safetensors"


def with_boxes(prompt: dict, gligen: str, boxes: list[tuple[str, int, int, int, int]]) -> dict:
    """The prompt with its positive conditioning run through one GLIGENTextBoxApply per (text, w, h, x, y)."""
    prompt = json.loads(json.dumps(prompt))
    prompt["20"] = {"class_type": "GLIGENLoader", "inputs": {"gligen_name": gligen}}
    source = ["6", 0]
    for n, (text, w, h, x, y) in enumerate(boxes):
        node = str(21 + n)
        prompt[node] = {"class_type": "GLIGENTextBoxApply", "inputs": {
            "conditioning_to": source, "clip": ["4", 1], "gligen_textbox_model": ["20", 0], "text": text,
            "width": w, "height": h, "x": x, "y": y}}
        source = [node, 0]
    prompt["3"]["inputs"]["positive"] = source
    return prompt


async def image(client, settings, prompt) -> np.ndarray:
    prompt_id, messages = await run_prompt(client, prompt)
    errors = of_type(messages, "execution_error")
    assert not errors, errors[0]["exception_message"] + "".join(errors[0]["traceback"])
    return saved(settings, await wait_history(client, prompt_id))[0]


async def test_text_boxes_change_the_image(client, settings, files):
    checkpoint, gligen = files
    base = default_workflow(checkpoint, steps=2)
    plain = await image(client, settings, base)
    boxed = await image(client, settings, with_boxes(base, gligen, [("a red ball", 32, 32, 0, 16)]))
    moved = await image(client, settings, with_boxes(base, gligen, [("a red ball", 32, 32, 32, 16)]))
    two = await image(client, settings, with_boxes(base, gligen, [("a red ball", 32, 32, 0, 16),
                                                                 ("the sun", 16, 16, 48, 0)]))
    assert boxed.shape == plain.shape == (64, 64, 3) and boxed.std() > 0
    for a, b in ((boxed, plain), (moved, boxed), (two, boxed)):
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    again = await image(client, settings, with_boxes(base, gligen, [("a red ball", 32, 32, 0, 16)]))
    assert np.array_equal(boxed, again)


async def test_nodes_are_listed_with_the_gligen_files(client, files):
    info = await (await client.get("/object_info")).json()
    assert info["GLIGENLoader"]["input"]["required"]["gligen_name"][0] == [files[1]]
    for key in ("input_order", "output", "output_is_list", "output_name", "display_name", "description",
                "python_module", "category", "output_node"):
        for name in ("GLIGENLoader", "GLIGENTextBoxApply"):
            assert info[name][key] == declaration(name)[key], (name, key)
    assert info["GLIGENTextBoxApply"]["input"] == declaration("GLIGENTextBoxApply")["input"]
