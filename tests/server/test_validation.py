"""POST /prompt validation through HTTP: ComfyUI's error types and shapes; bad input is a 400, never a 500."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import wait_history
from tests.server.test_execution import chain


async def post(client, body, **kwargs):
    resp = await client.post("/prompt", json=body, **kwargs) if not isinstance(body, (bytes, str)) \
        else await client.post("/prompt", data=body, headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


async def node_errors_for(client, prompt):
    status, body = await post(client, {"prompt": prompt})
    assert status == 400, body
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    return body["node_errors"]


async def test_valid_prompt_is_queued(client):
    status, body = await post(client, {"prompt": chain(), "prompt_id": "my-id"})
    assert status == 200
    assert body["prompt_id"] == "my-id" and body["node_errors"] == {} and isinstance(body["number"], int)


@pytest.mark.parametrize("body, kind", [
    ({}, "no_prompt"),
    ([1, 2], "no_prompt"),
    ({"prompt": {}}, "prompt_no_outputs"),
    ({"prompt": {"1": {"class_type": "TestConstant", "inputs": {"value": 1}}}}, "prompt_no_outputs"),
    ({"prompt": {"9": {"class_type": "NoSuchNodeType", "inputs": {}}}}, "invalid_prompt"),
    ({"prompt": {"9": {"inputs": {}}}}, "invalid_prompt"),
    ({"prompt": {"9": None}}, "invalid_prompt"),
    ({"prompt": {"9": {"class_type": ["TestOutput"], "inputs": {}}}}, "invalid_prompt"),
    ({"prompt": {"9": {"class_type": "TestOutput", "inputs": []}}}, "invalid_prompt"),
    ({"prompt": [1, 2]}, "invalid_prompt"),
    ({"prompt": "text"}, "invalid_prompt"),
])
async def test_malformed_prompts_get_comfyui_errors(client, body, kind):
    status, answer = await post(client, body)
    assert status == 400
    assert answer["error"]["type"] == kind
    assert set(answer["error"]) == {"type", "message", "details", "extra_info"}
    assert answer["node_errors"] == {}


async def test_unknown_class_type_message_matches_comfyui(client):
    _, body = await post(client, {"prompt": {"9": {"class_type": "NoSuchNodeType", "inputs": {}}}})
    assert body["error"]["message"] == "Cannot execute because node NoSuchNodeType does not exist."
    assert body["error"]["details"] == "Node ID '#9'"


@pytest.mark.parametrize("raw", [b"{\"prompt\": {", b"", b"\xff\xfe", b"null"])
async def test_malformed_json_is_a_400(client, raw):
    resp = await client.post("/prompt", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] in ("invalid_json", "no_prompt")


@pytest.mark.parametrize("field, value", [("client_id", 123), ("client_id", {"a": 1}), ("number", "abc"),
                                          ("extra_data", [1]), ("partial_execution_targets", "3")])
async def test_bad_envelope_fields_are_400(client, field, value):
    status, body = await post(client, {"prompt": chain(), field: value})
    assert status == 400, body


async def test_required_input_missing(client):
    prompt = chain()
    del prompt["2"]["inputs"]["b"]
    errors = await node_errors_for(client, prompt)
    assert errors == {"2": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                                        "details": "b", "extra_info": {"input_name": "b"}}],
                            "dependent_outputs": ["3"], "class_type": "TestAdd"}}


async def test_min_max_and_conversion_errors(client):
    prompt = chain(value=5000)
    errors = await node_errors_for(client, prompt)
    error = errors["1"]["errors"][0]
    assert error["type"] == "value_bigger_than_max" and error["message"] == "Value 5000 bigger than max of 1000"
    assert error["extra_info"]["input_config"] == ["INT", {"default": 0, "min": -1000, "max": 1000}]

    errors = await node_errors_for(client, chain(value=-5000))
    assert errors["1"]["errors"][0]["type"] == "value_smaller_than_min"

    errors = await node_errors_for(client, chain(value="abc"))
    error = errors["1"]["errors"][0]
    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Failed to convert an input value to a INT value"
    assert error["details"].startswith("value, abc, invalid literal for int()")


async def test_lenient_coercions_pass_as_upstream(client):
    for value in (4.7, "4"):
        status, body = await post(client, {"prompt": chain(value=value)})
        assert status == 200, body


async def test_value_not_in_list(client):
    prompt = {"1": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}},
              "2": {"class_type": "TestLazySwitch", "inputs": {"choose_a": ["1", 0], "a": 1, "b": 2}},
              "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}}}
    status, _ = await post(client, {"prompt": prompt})
    assert status == 200


async def test_links_to_missing_nodes_and_slots_and_wrong_types(client):
    prompt = chain()
    prompt["2"]["inputs"]["a"] = ["99", 0]
    errors = await node_errors_for(client, prompt)
    error = errors["2"]["errors"][0]
    assert error["type"] == "exception_during_inner_validation" and "'99'" in error["details"]
    assert error["extra_info"]["input_name"] == "a"

    prompt = chain()
    prompt["2"]["inputs"]["a"] = ["1", 3]
    errors = await node_errors_for(client, prompt)
    assert "output 3" in errors["2"]["errors"][0]["details"]

    prompt = chain()
    prompt["4"] = {"class_type": "PrimitiveString", "inputs": {"value": "x"}}
    prompt["2"]["inputs"]["a"] = ["4", 0]
    errors = await node_errors_for(client, prompt)
    error = errors["2"]["errors"][0]
    assert error["type"] == "return_type_mismatch"
    assert error["details"] == "a, received_type(STRING) mismatch input_type(INT)"
    assert error["extra_info"]["linked_node"] == ["4", 0]

    prompt = chain()
    prompt["2"]["inputs"]["a"] = ["1", 0, 5]
    errors = await node_errors_for(client, prompt)
    assert errors["2"]["errors"][0]["type"] == "bad_linked_input"


async def test_cycles_are_rejected(client):
    prompt = chain()
    prompt["1"] = {"class_type": "TestAdd", "inputs": {"a": ["2", 0], "b": 1}}
    errors = await node_errors_for(client, prompt)
    assert any(e["type"] == "dependency_cycle" for node in errors.values() for e in node["errors"])


async def test_custom_validate_inputs(client):
    prompt = {"1": {"class_type": "TestValidated", "inputs": {"value": 3}},
              "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}
    errors = await node_errors_for(client, prompt)
    error = errors["1"]["errors"][0]
    assert error["type"] == "custom_validation_failed" and error["details"] == "value - 3 is odd"
    prompt["1"]["inputs"]["value"] = 4
    status, _ = await post(client, {"prompt": prompt})
    assert status == 200


async def test_one_bad_output_does_not_block_the_good_one(client):
    prompt = chain()
    prompt["4"] = {"class_type": "TestOutput", "inputs": {"value": ["99", 0]}}
    status, body = await post(client, {"prompt": prompt})
    assert status == 200
    assert list(body["node_errors"]) == ["4"]
    entry = await wait_history(client, body["prompt_id"])
    assert entry["prompt"][4] == ["3"] and list(entry["outputs"]) == ["3"]


async def test_partial_execution_targets_limit_outputs(client):
    prompt = chain()
    prompt["4"] = {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}
    status, body = await post(client, {"prompt": prompt, "partial_execution_targets": ["4"]})
    assert status == 200
    history_entry = await wait_history(client, body["prompt_id"])
    assert history_entry["prompt"][4] == ["4"] and list(history_entry["outputs"]) == ["4"]


async def test_huge_graph_validates_fast_without_blocking_the_server(client):
    n = 10_000
    prompt = {"0": {"class_type": "TestConstant", "inputs": {"value": 1}}}
    for i in range(1, n):
        prompt[str(i)] = {"class_type": "TestAdd", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    prompt["out"] = {"class_type": "TestOutput", "inputs": {"value": [str(n - 1), 0]}}
    prompt[str(n // 2)]["inputs"]["b"] = "not a number"  # forces a full walk and a 400
    started = time.perf_counter()
    task = asyncio.ensure_future(post(client, {"prompt": prompt}))
    resp = await client.get("/prompt")  # answered while validation runs
    assert resp.status == 200
    status, body = await task
    elapsed = time.perf_counter() - started
    assert status == 400 and str(n // 2) in body["node_errors"]
    assert elapsed < 10, elapsed
