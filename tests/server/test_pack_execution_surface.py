"""A custom node pack using the execution surface of ComfyUI's node API, loaded from an extra_model_paths.yaml
`custom_nodes` entry: type hints (comfy.comfy_types), expansion with GraphBuilder, ExecutionBlocker, rawLink and
DYNPROMPT, variadic inputs, async functions and validators, ProgressBar for a named node, comfy_api progress."""
from __future__ import annotations

import pytest

from engine import Settings
from server.app import create_app
from tests.conftest import of_type, run_prompt

PACK = '''
import asyncio

from comfy.comfy_types import IO, ComfyNodeABC, InputTypeDict
from comfy.utils import ProgressBar
from comfy_api.latest import ComfyAPI
from comfy_execution.graph import ExecutionBlocker
from comfy_execution.graph_utils import GraphBuilder, is_link

api = ComfyAPI()


class Node(ComfyNodeABC):
    FUNCTION = "run"
    CATEGORY = "pack"


class Number(Node):
    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"value": (IO.FLOAT, {"default": 0.0, "min": -100.0})}}
    RETURN_TYPES = (IO.FLOAT,)

    def run(self, value):
        return (value,)


class Sum(Node):
    """Takes input1 and any number of further linked inputs named input2, input3, ..."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"input1": (IO.NUMBER, {"forceInput": True})}}
    RETURN_TYPES = (IO.FLOAT,)

    def run(self, input1, **more):
        return (input1 + sum(more.values()),)


class Repeat(Node):
    """Adds 1 `times` times by expanding into an add and another Repeat, recursively."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (IO.FLOAT, {"forceInput": True}), "times": (IO.INT, {"default": 1})}}
    RETURN_TYPES = (IO.FLOAT,)

    def run(self, value, times):
        if times <= 0:
            return (value,)
        graph = GraphBuilder()
        one = graph.node("PackNumber", value=1.0)
        add = graph.node("PackSum", input1=value, input2=one.out(0))  # (a constant must be a declared input)
        again = graph.node("PackRepeat", value=add.out(0), times=times - 1)
        return {"result": (again.out(0),), "expand": graph.finalize()}


class Gate(Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (IO.ANY, {}), "open": (IO.BOOLEAN, {"default": True}),
                             "message": (IO.STRING, {"default": ""})}}
    RETURN_TYPES = (IO.ANY,)

    def run(self, value, open, message):
        return (value if open else ExecutionBlocker(message or None),)


class Describe(Node):
    """The class of the node its input links to, read from the running graph (rawLink + DYNPROMPT)."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": (IO.ANY, {"rawLink": True})},
                "hidden": {"dynprompt": "DYNPROMPT", "unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = (IO.STRING,)

    def run(self, source, dynprompt, unique_id):
        assert is_link(source) and dynprompt.get_node(unique_id)["class_type"] == "PackDescribe"
        return (dynprompt.get_node(source[0])["class_type"],)


class AsyncDouble(Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (IO.FLOAT, {"forceInput": True})}, "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = (IO.FLOAT,)

    @classmethod
    async def VALIDATE_INPUTS(cls, input_types):
        await asyncio.sleep(0)
        return True if input_types["value"] == "FLOAT" else f"doubles floats, not {input_types['value']}"

    async def run(self, value, unique_id):
        await api.execution.set_progress(1, 4)
        await asyncio.sleep(0.01)
        ProgressBar(4, node_id=unique_id).update_absolute(3)
        return (value * 2,)


MET = {}


class Meet(Node):
    """Finishes only once its partner has started: two of them complete only if async nodes overlap."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (IO.FLOAT, {"forceInput": True}), "me": (IO.STRING, {}),
                             "partner": (IO.STRING, {})}, "optional": {"fail": (IO.BOOLEAN, {"default": False})}}
    RETURN_TYPES = (IO.FLOAT,)

    async def run(self, value, me, partner, fail=False):
        MET.setdefault(me, asyncio.Event()).set()
        await asyncio.wait_for(MET.setdefault(partner, asyncio.Event()).wait(), 20)
        if fail:
            raise RuntimeError(f"{me} fails after meeting {partner}")
        return (value,)


class Positive(Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (IO.FLOAT, {"default": 1.0, "min": -10.0})}}
    RETURN_TYPES = (IO.FLOAT,)

    @classmethod
    async def VALIDATE_INPUTS(cls, value):
        return value is None or value > 0 or "must be positive"

    def run(self, value):
        return (value,)


class Loose(Node):
    """Returns fewer values than it declares, as some published nodes do (ComfyUI takes what is returned)."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (IO.FLOAT, {"forceInput": True})}}
    RETURN_TYPES = (IO.FLOAT, IO.FLOAT)
    OUTPUT_NODE = True

    def run(self, value):
        return (value,)


class AnyName(dict):
    """An input table containing every name, as packs declare open-ended inputs (rgthree's Power Lora Loader)."""
    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else (IO.ANY,)


class Collect(Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "optional": AnyName()}
    RETURN_TYPES = (IO.STRING,)

    def run(self, **named):
        return (repr(sorted(named.items())),)


class Show(Node):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (IO.ANY, {})}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    def run(self, value):
        return {"ui": {"values": [value]}}


NODE_CLASS_MAPPINGS = {"Pack" + cls.__name__: cls for cls in (Number, Sum, Repeat, Gate, Describe, AsyncDouble,
                                                              Meet, Positive, Loose, Collect, Show)}
'''


@pytest.fixture
async def pack_client(aiohttp_client, tmp_path):
    pack = tmp_path / "elsewhere" / "nodes" / "surface_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text("mine:\n    custom_nodes: elsewhere/nodes\n")  # relative to the yaml file's folder
    base = tmp_path / "base"
    base.mkdir()
    return await aiohttp_client(create_app(Settings(base_directory=base, extra_model_paths_config=[config])))


def number(value) -> dict:
    return {"class_type": "PackNumber", "inputs": {"value": value}}


def show(source: str) -> dict:
    return {"class_type": "PackShow", "inputs": {"value": [source, 0]}}


async def shown(client, prompt: dict, node: str = "9"):
    _, messages = await run_prompt(client, prompt)
    return {d["node"]: d["output"]["values"] for d in of_type(messages, "executed")}.get(node), messages


async def test_the_pack_loads_from_an_extra_paths_entry_with_its_type_hints(pack_client):
    info = await (await pack_client.get("/object_info")).json()
    assert info["PackSum"]["input"]["required"]["input1"] == ["FLOAT,INT", {"forceInput": True}]
    assert info["PackGate"]["output"] == ["*"] and info["PackNumber"]["python_module"] == "custom_nodes.surface_pack"


async def test_linked_inputs_the_node_does_not_declare_reach_it_as_keywords(pack_client):
    prompt = {"1": number(1.5), "2": number(2), "3": number(4),
              "4": {"class_type": "PackSum", "inputs": {"input1": ["1", 0], "input2": ["2", 0], "input3": ["3", 0]}},
              "9": show("4")}
    assert (await shown(pack_client, prompt))[0] == [7.5]


async def test_recursive_expansion_with_graph_builder_prefixes(pack_client):
    prompt = {"1": number(10), "2": {"class_type": "PackRepeat", "inputs": {"value": ["1", 0], "times": 3}},
              "9": show("2")}
    values, messages = await shown(pack_client, prompt)
    assert values == [13.0]
    expanded = [d["node"] for d in of_type(messages, "executing") if d["node"] and "." in d["node"]]
    assert len(expanded) == len(set(expanded)) >= 9  # three levels, three nodes each, every id distinct
    assert {d["display_node"] for d in of_type(messages, "executing") if d["node"] in expanded} == {"2"}


async def test_an_execution_blocker_stops_the_nodes_after_it(pack_client):
    def gated(open_, message=""):
        return {"1": number(3), "2": {"class_type": "PackGate", "inputs": {"value": ["1", 0], "open": open_,
                                                                           "message": message}},
                "3": {"class_type": "PackSum", "inputs": {"input1": ["2", 0]}}, "9": show("3")}

    assert (await shown(pack_client, gated(True)))[0] == [3]
    values, messages = await shown(pack_client, gated(False, "closed"))
    assert values is None and of_type(messages, "execution_success")
    errors = of_type(messages, "execution_error")
    assert [(e["node_id"], e["exception_type"], e["exception_message"]) for e in errors] == [
        ("3", "ExecutionBlocked", "Execution Blocked: closed")]
    values, messages = await shown(pack_client, gated(False))  # no message: blocked silently
    assert values is None and not of_type(messages, "execution_error") and of_type(messages, "execution_success")


async def test_a_raw_link_input_gets_the_link_and_the_running_graph(pack_client):
    prompt = {"1": number(3), "2": {"class_type": "PackDescribe", "inputs": {"source": ["1", 0]}}, "9": show("2")}
    assert (await shown(pack_client, prompt))[0] == ["PackNumber"]


async def test_async_nodes_and_validators_run_and_report_progress(pack_client):
    prompt = {"1": number(3), "2": {"class_type": "PackAsyncDouble", "inputs": {"value": ["1", 0]}}, "9": show("2")}
    values, messages = await shown(pack_client, prompt)
    assert values == [6]
    assert [(p["value"], p["max"]) for p in of_type(messages, "progress") if p["node"] == "2"] == [(1, 4), (3, 4)]

    prompt["1"] = {"class_type": "PackDescribe", "inputs": {"source": ["0", 0]}}
    prompt["0"] = number(1)
    response = await pack_client.post("/prompt", json={"prompt": prompt})
    body = await response.json()
    assert response.status == 400
    assert body["node_errors"]["2"]["errors"][0]["details"] == "input_types - doubles floats, not STRING"


async def test_validators_get_constants_and_none_for_links(pack_client):
    async def errors(prompt):
        response = await pack_client.post("/prompt", json={"prompt": prompt})
        return response.status, (await response.json()).get("node_errors", {})

    constant = {"2": {"class_type": "PackPositive", "inputs": {"value": -1.0}}, "9": show("2")}
    status, node_errors = await errors(constant)
    assert status == 400 and node_errors["2"]["errors"][0]["details"] == "value - must be positive"
    linked = {"1": number(-1), "2": {"class_type": "PackPositive", "inputs": {"value": ["1", 0]}}, "9": show("2")}
    assert (await shown(pack_client, linked))[0] == [-1]  # the validator saw None: the value did not exist yet


async def test_async_nodes_overlap_and_one_failing_fails_only_its_prompt(pack_client):
    def meeting(tag: str, fail: bool = False) -> dict:
        meet = "PackMeet"
        return {"1": number(2),
                "2": {"class_type": meet, "inputs": {"value": ["1", 0], "me": f"a{tag}", "partner": f"b{tag}"}},
                "3": {"class_type": meet, "inputs": {"value": ["1", 0], "me": f"b{tag}", "partner": f"a{tag}",
                                                     "fail": fail}},
                "4": {"class_type": "PackSum", "inputs": {"input1": ["2", 0], "input2": ["3", 0]}}, "9": show("4")}

    values, messages = await shown(pack_client, meeting("1"))  # run one after the other, neither could finish
    assert values == [4]
    _, messages = await run_prompt(pack_client, meeting("2", fail=True))
    [error] = of_type(messages, "execution_error")
    assert (error["node_id"], error["exception_message"]) == ("3", "b2 fails after meeting a2\n")
    assert (await shown(pack_client, meeting("3")))[0] == [4]  # the worker goes on


async def test_a_node_may_return_fewer_values_than_it_declares(pack_client):
    prompt = {"1": number(5), "2": {"class_type": "PackLoose", "inputs": {"value": ["1", 0]}},
              "8": {"class_type": "PackShow", "inputs": {"value": ["2", 0]}}, "9": show("2")}
    prompt["9"]["inputs"]["value"] = ["2", 1]  # the slot it did not return reaches its user as None
    values, messages = await shown(pack_client, prompt)
    assert values == [None] and (await shown(pack_client, prompt, "8"))[0] == [5]


async def test_inputs_of_any_name_reach_a_node_whose_input_table_contains_every_name(pack_client):
    prompt = {"1": number(2.5), "2": {"class_type": "PackCollect", "inputs": {
        "lora_1": {"on": True, "lora": "style.safetensors", "strength": 0.8}, "count": 3, "linked": ["1", 0]}},
        "9": show("2")}
    assert (await shown(pack_client, prompt))[0] == [repr(sorted(
        {"lora_1": {"on": True, "lora": "style.safetensors", "strength": 0.8}, "count": 3, "linked": 2.5}.items()))]
