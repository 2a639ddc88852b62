"""The embedded client: prompts run in process, with progress, outputs with absolute paths, typed errors."""
from __future__ import annotations

import pytest
from PIL import Image

from comfyd import Comfy, PromptFailed, PromptInvalid
from server.app import build_registry
from tests import testnodes


@pytest.fixture
def registry(settings):
    reg = build_registry(settings)
    reg.register_module(testnodes, python_module="tests")
    return reg


IMAGE_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0xFF0000}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "embedded"}},
}


async def test_queue_prompt_returns_outputs_with_absolute_paths(tmp_path, registry):
    async with Comfy(tmp_path, cpu=True, registry=registry) as client:
        outputs = await client.queue_prompt(IMAGE_PROMPT)
    image = outputs["2"]["images"][0]
    assert image["filename"] == "embedded_00001_.png" and image["type"] == "output"
    assert Image.open(image["abs_path"]).getpixel((0, 0)) == (255, 0, 0)


async def test_progress_is_streamed_and_errors_are_typed(tmp_path, registry):
    slow = {"1": {"class_type": "TestConstant", "inputs": {"value": 2}},
            "2": {"class_type": "TestSlow", "inputs": {"value": ["1", 0], "steps": 3, "delay": 0}},
            "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}}}
    async with Comfy(tmp_path, cpu=True, registry=registry) as client:
        events = [event async for event in client.queue_with_progress(slow)]
        assert [d["value"] for e, d in events if e == "progress"] == [1, 2, 3]
        assert events[-1] == ("outputs", {"3": {"values": [2]}})

        with pytest.raises(PromptInvalid) as invalid:
            await client.queue_prompt({"1": {"class_type": "TestOutput", "inputs": {}}})
        assert invalid.value.node_errors["1"]["errors"][0]["type"] == "required_input_missing"

        failing = {"1": {"class_type": "TestFail", "inputs": {"value": 1, "message": "nope"}},
                   "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}
        with pytest.raises(PromptFailed) as failed:
            await client.queue_prompt(failing)
        assert failed.value.kind == "execution_error" and str(failed.value) == "nope"
        assert (await client.queue_prompt(IMAGE_PROMPT))["2"]["images"]  # still serving
