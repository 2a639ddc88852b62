"""Custom node packs written against ComfyUI's V3 node API (`comfy_api.latest`: io schemas, ui outputs,
ComfyExtension): a pack loaded through `comfy_entrypoint`, its nodes described in /object_info as ComfyUI
describes them and run through HTTP and the websocket; and a V1 pack importing `comfy_api.v0_0_2`."""
from __future__ import annotations

import sys

import pytest
from PIL import Image

from engine import Settings
from nodes.registry import NodeRegistry
from server.app import create_app
from tests.conftest import of_type, run_prompt

V3_PACK = '''
import asyncio

import torch

from comfy_api.latest import ComfyExtension, comfy_io, io, ui
from comfy_execution.graph_utils import GraphBuilder

FINGERPRINTED = []  # what fingerprint_inputs was given, for the test to read
LOADED = []


class Number(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Number", display_name="V3 Number", category="v3 pack", description="A constant.",
            inputs=[io.Float.Input("value", default=0.0, min=-100.0, max=100.0, step=0.5, tooltip="the value")],
            outputs=[io.Float.Output(display_name="number", tooltip="the value again")])

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(value)


class Fail(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Fail", outputs=[io.Float.Output()])

    @classmethod
    def execute(cls):
        raise RuntimeError("this branch was not asked for")


class Choose(io.ComfyNode):
    """Evaluates only the branch it picks: lazy inputs, asked for by check_lazy_status."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Choose", category="v3 pack",
            inputs=[io.Boolean.Input("first", default=True, label_on="a", label_off="b"),
                    io.Float.Input("a", optional=True, lazy=True, force_input=True),
                    io.Float.Input("b", optional=True, lazy=True, force_input=True)],
            outputs=[io.Float.Output()], hidden=[io.Hidden.unique_id])

    @classmethod
    def check_lazy_status(cls, first, a=None, b=None):
        assert isinstance(cls.hidden.unique_id, str)  # hidden values reach the hook, not as inputs
        wanted = "a" if first else "b"
        return [wanted] if {"a": a, "b": b}[wanted] is None else []

    @classmethod
    def execute(cls, first, a=None, b=None):
        return io.NodeOutput(a if first else b)


class Range(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Range", inputs=[io.Int.Input("count", default=3, min=1, max=10)],
                         outputs=[io.Int.Output("items", is_output_list=True)])

    @classmethod
    async def execute(cls, count):
        await asyncio.sleep(0)
        return io.NodeOutput(list(range(count)))


class Join(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Join", is_input_list=True, hidden=[io.Hidden.unique_id],
                         inputs=[io.Int.Input("values", force_input=True),
                                 io.Combo.Input("separator", options=[",", ";"], default=",")],
                         outputs=[io.String.Output()])

    @classmethod
    def execute(cls, values, separator):
        return io.NodeOutput(separator[0].join(map(str, values)) + f" @{cls.hidden.unique_id}")


class Show(io.ComfyNode):
    """An output node with an input named as a hidden value it gets (an output node gets the prompt)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Show", is_output_node=True, hidden=[io.Hidden.unique_id],
                         inputs=[comfy_io.AnyType.Input("value"), io.String.Input("prompt", default="")])

    @classmethod
    def validate_inputs(cls, prompt):
        return prompt != "forbidden" or "that prompt is forbidden"

    @classmethod
    def execute(cls, value, prompt):
        assert isinstance(cls.hidden.prompt, dict) and cls.hidden.dynprompt is None
        return io.NodeOutput(ui=ui.PreviewText(f"{prompt}{value} @{cls.hidden.unique_id}"))


class Clock(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Clock", inputs=[io.Int.Input("tick", default=0, min=-1)],
                         outputs=[io.Int.Output()])

    @classmethod
    def fingerprint_inputs(cls, tick):
        FINGERPRINTED.append(tick)
        return float("nan") if tick < 0 else tick  # NaN: never the same, so never cached

    @classmethod
    def execute(cls, tick):
        return io.NodeOutput(tick)


class Gate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Gate", inputs=[io.Float.Input("value", force_input=True), io.Boolean.Input("open")],
                         outputs=[io.Float.Output()])

    @classmethod
    def execute(cls, value, open):
        return io.NodeOutput(value) if open else io.NodeOutput(block_execution="the gate is closed")


class Add(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Add", inputs=[io.Float.Input("a", force_input=True),
                                                  io.Float.Input("b", force_input=True)],
                         outputs=[io.Float.Output()])

    @classmethod
    def execute(cls, a, b):
        return io.NodeOutput(a + b)


class Twice(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Twice", enable_expand=True, inputs=[io.Float.Input("value", force_input=True)],
                         outputs=[io.Float.Output()])

    @classmethod
    def execute(cls, value):
        graph = GraphBuilder()
        added = graph.node("V3Add", a=value, b=value)
        return io.NodeOutput(added.out(0), expand=graph.finalize())


class Gradient(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Gradient", is_output_node=True,
                         inputs=[io.Int.Input("width", default=8, min=1), io.Int.Input("height", default=4, min=1)],
                         outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, width, height):
        image = torch.linspace(0, 1, width).view(1, 1, width, 1).expand(1, height, width, 3)
        return io.NodeOutput(image, ui=ui.PreviewImage(image, cls=cls))


class Extension(ComfyExtension):
    async def on_load(self):
        LOADED.append(True)

    async def get_node_list(self):
        assert LOADED, "on_load runs first"
        return [Number, Fail, Choose, Range, Join, Show, Clock, Gate, Add, Twice, Gradient]


async def comfy_entrypoint() -> ComfyExtension:
    return Extension()
'''

V1_PACK = '''
from comfy_api.v0_0_2 import ComfyAPI, io

api = ComfyAPI()


class Double:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (io.Float.io_type, {"default": 1.0})}}
    RETURN_TYPES = (io.Float.io_type,)
    FUNCTION = "run"
    CATEGORY = "v1 pack"

    def run(self, value):
        return (value * 2,)


class Negate(io.ComfyNode):
    """A V3 node class listed in V1 mappings, as ComfyUI allows."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="UnusedId", inputs=[io.Float.Input("value", force_input=True)],
                         outputs=[io.Float.Output()])

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(-value)


NODE_CLASS_MAPPINGS = {"V1Double": Double, "V1Negate": Negate}
NODE_DISPLAY_NAME_MAPPINGS = {"V1Double": "Double (v1)"}
'''


@pytest.fixture
async def v3_client(aiohttp_client, tmp_path):
    for name, source in (("v3_pack", V3_PACK), ("v1_pack", V1_PACK)):
        pack = tmp_path / "custom_nodes" / name
        pack.mkdir(parents=True)
        (pack / "__init__.py").write_text(source)
    return await aiohttp_client(create_app(Settings(base_directory=tmp_path)))


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def show(source: str, prompt: str = "") -> dict:
    return node("V3Show", value=[source, 0], prompt=prompt)


async def texts(client, prompt: dict) -> tuple[dict, list]:
    """The text each output node showed, and every message of the run."""
    _, messages = await run_prompt(client, prompt)
    return {d["node"]: d["output"]["text"] for d in of_type(messages, "executed") if "text" in d["output"]}, messages


async def test_object_info_describes_v3_nodes_as_comfyui_does(v3_client):
    info = await (await v3_client.get("/object_info")).json()
    assert info["V3Number"] == {
        "input": {"required": {"value": ["FLOAT", {"tooltip": "the value", "default": 0.0, "min": -100.0,
                                                   "max": 100.0, "step": 0.5}]}},
        "input_order": {"required": ["value"]},
        "output": ["FLOAT"], "output_is_list": [False], "output_name": ["number"],
        "output_tooltips": ["the value again"], "name": "V3Number", "display_name": "V3 Number",
        "description": "A constant.", "python_module": "custom_nodes.v3_pack", "category": "v3 pack",
        "output_node": False, "deprecated": False, "experimental": False, "api_node": False}
    assert info["V3Choose"]["input"] == {
        "required": {"first": ["BOOLEAN", {"default": True, "label_on": "a", "label_off": "b"}]},
        "optional": {"a": ["FLOAT", {"lazy": True, "forceInput": True}],
                     "b": ["FLOAT", {"lazy": True, "forceInput": True}]},
        "hidden": {"unique_id": ["UNIQUE_ID"]}}
    assert info["V3Choose"]["input_order"] == {"required": ["first"], "optional": ["a", "b"], "hidden": ["unique_id"]}
    # no display name: null, the category defaults to "sd", tooltips are null
    assert [info["V3Range"][key] for key in ("display_name", "category", "output_is_list", "output_tooltips")] == [
        None, "sd", [True], [None]]
    assert info["V3Join"]["input"]["required"] == {
        "values": ["INT", {"forceInput": True}],
        "separator": ["COMBO", {"default": ",", "multiselect": False, "options": [",", ";"]}]}
    # an output node gets the prompt and extra_pnginfo as hidden values, even beside an input named "prompt"
    assert info["V3Show"]["input"] == {
        "required": {"value": ["*", {}], "prompt": ["STRING", {"default": "", "multiline": False}]},
        "hidden": {"unique_id": ["UNIQUE_ID"], "prompt": ["PROMPT"], "extra_pnginfo": ["EXTRA_PNGINFO"]}}
    assert info["V3Show"]["output"] == [] and info["V3Show"]["output_node"] is True
    assert info["V3Clock"]["input"]["required"]["tick"] == ["INT", {"default": 0, "min": -1}]


async def test_a_v1_pack_imports_the_v0_0_2_api_and_may_list_v3_classes(v3_client):
    info = await (await v3_client.get("/object_info")).json()
    assert info["V1Double"]["display_name"] == "Double (v1)"
    assert info["V1Double"]["python_module"] == info["V1Negate"]["python_module"] == "custom_nodes.v1_pack"
    assert info["V1Negate"]["name"] == "UnusedId"  # ComfyUI names a V3 node by its schema
    prompt = {"1": node("V1Double", value=1.5), "2": node("V1Negate", value=["1", 0]), "9": show("2")}
    assert (await texts(v3_client, prompt))[0] == {"9": ["-3.0 @9"]}


async def test_lazy_inputs_are_evaluated_only_when_asked_for(v3_client):
    def choose(first: bool) -> dict:
        return {"1": node("V3Number", value=2.5), "2": node("V3Fail"),
                "3": node("V3Choose", first=first, a=["1", 0], b=["2", 0]), "9": show("3", "picked ")}

    shown, messages = await texts(v3_client, choose(True))
    assert shown == {"9": ["picked 2.5 @9"]} and "2" not in {d["node"] for d in of_type(messages, "executing")}
    _, messages = await texts(v3_client, choose(False))
    assert [e["exception_message"] for e in of_type(messages, "execution_error")] == [
        "this branch was not asked for\n"]


async def test_output_lists_async_nodes_and_whole_list_inputs(v3_client):
    prompt = {"1": node("V3Range", count=3), "2": node("V3Join", values=["1", 0], separator=";"),
              "8": show("1", "item "), "9": show("2")}
    shown, _ = await texts(v3_client, prompt)
    assert shown == {"8": ["item 0 @8", "item 1 @8", "item 2 @8"], "9": ["0;1;2 @2 @9"]}


async def test_validate_inputs_and_declared_ranges(v3_client):
    response = await v3_client.post("/prompt", json={"prompt": {
        "1": node("V3Number", value=1.0), "9": show("1", "forbidden")}})
    body = await response.json()
    assert response.status == 400
    assert [e["details"] for e in body["node_errors"]["9"]["errors"]] == ["prompt - that prompt is forbidden"]
    response = await v3_client.post("/prompt", json={"prompt": {"1": node("V3Number", value=101), "9": show("1")}})
    body = await response.json()
    assert body["node_errors"]["1"]["errors"][0]["type"] == "value_bigger_than_max"


async def test_fingerprint_inputs_decides_whether_a_node_reruns(v3_client):
    pack = sys.modules["custom_nodes.v3_pack"]

    async def cached(tick: int) -> list:
        _, messages = await run_prompt(v3_client, {"1": node("V3Clock", tick=tick), "9": show("1")})
        return of_type(messages, "execution_cached")[0]["nodes"]

    assert await cached(1) == [] and await cached(1) == ["1", "9"]
    assert await cached(-1) == [] and await cached(-1) == []
    assert pack.FINGERPRINTED == [1, 1, -1, -1]


async def test_block_execution_stops_the_nodes_after_it(v3_client):
    def gated(open_: bool) -> dict:
        return {"1": node("V3Number", value=4), "2": node("V3Gate", value=["1", 0], open=open_), "9": show("2")}

    assert (await texts(v3_client, gated(True)))[0] == {"9": ["4.0 @9"]}
    shown, messages = await texts(v3_client, gated(False))
    assert shown == {} and of_type(messages, "execution_success")
    assert [(e["node_id"], e["exception_message"]) for e in of_type(messages, "execution_error")] == [
        ("9", "Execution Blocked: the gate is closed")]


async def test_a_node_output_may_expand_into_a_subgraph(v3_client):
    prompt = {"1": node("V3Number", value=3), "2": node("V3Twice", value=["1", 0]), "9": show("2")}
    shown, messages = await texts(v3_client, prompt)
    assert shown == {"9": ["6.0 @9"]}
    assert any(d["node"].startswith("2.") for d in of_type(messages, "executing") if d["node"])


async def test_preview_image_writes_a_temp_png_with_the_prompt(v3_client, tmp_path):
    _, messages = await run_prompt(v3_client, {"1": node("V3Gradient", width=8, height=4)})
    [output] = [d["output"] for d in of_type(messages, "executed") if d["node"] == "1"]
    [saved] = output["images"]
    assert output["animated"] == [False] and saved["type"] == "temp" and saved["subfolder"] == ""
    with Image.open(tmp_path / "temp" / saved["filename"]) as png:
        assert png.size == (8, 4) and '"V3Gradient"' in png.text["prompt"]


def test_a_pack_whose_entrypoint_returns_no_extension_fails_to_load(tmp_path):
    pack = tmp_path / "not_v3"
    pack.mkdir()
    (pack / "__init__.py").write_text("def comfy_entrypoint():\n    return object()\n")
    (tmp_path / "nothing.py").write_text("VALUE = 1\n")
    by_name = {p.name: p for p in NodeRegistry().load_custom_nodes(tmp_path)}
    assert "returned object, not a ComfyExtension" in by_name["not_v3"].error
    assert "no NODE_CLASS_MAPPINGS dict and no comfy_entrypoint" in by_name["nothing"].error
