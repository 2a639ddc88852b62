"""The executor driven through the real app: order, caching, lists, lazy inputs, failures, interrupts."""
from __future__ import annotations

import asyncio

from tests import testnodes
from tests.conftest import messages_until, next_message, of_type, run_finished, run_prompt


def chain(value=1, add=2) -> dict:
    return {
        "1": {"class_type": "TestConstant", "inputs": {"value": value}},
        "2": {"class_type": "TestAdd", "inputs": {"a": ["1", 0], "b": add}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
    }


async def test_runs_in_dependency_order_and_reports_every_step(client):
    prompt_id, messages = await run_prompt(client, chain())
    types = [m["type"] for m in messages]
    assert types[0] == "status"
    assert types.index("execution_start") < types.index("execution_cached") < types.index("executing")
    executing = [d["node"] for d in of_type(messages, "executing")]
    assert executing == ["1", "2", "3", None]
    executed = of_type(messages, "executed")
    assert executed == [{"node": "3", "display_node": "3", "output": {"values": [3]}, "prompt_id": prompt_id}]
    assert types[-3:] == ["execution_success", "status", "executing"]
    assert of_type(messages, "status")[-1]["status"]["exec_info"]["queue_remaining"] == 0
    states = of_type(messages, "progress_state")[-1]["nodes"]
    assert {n: s["state"] for n, s in states.items()} == {"1": "finished", "2": "finished", "3": "finished"}

    history = await (await client.get(f"/history/{prompt_id}")).json()
    entry = history[prompt_id]
    assert entry["outputs"] == {"3": {"values": [3]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert entry["prompt"][1] == prompt_id and entry["prompt"][4] == ["3"]
    assert entry["meta"] == {"3": {"node_id": "3", "display_node": "3", "parent_node": None, "real_node_id": "3"}}


async def test_identical_prompt_is_served_from_cache_and_changes_rerun_only_downstream(client):
    await run_prompt(client, chain())
    testnodes.CALLS.clear()
    _, messages = await run_prompt(client, chain())
    assert of_type(messages, "execution_cached")[0]["nodes"] == ["1", "2", "3"]
    assert [d["node"] for d in of_type(messages, "executing")] == [None]
    assert of_type(messages, "executed")[0]["output"] == {"values": [3]}  # UI output replayed
    assert testnodes.CALLS == []

    _, messages = await run_prompt(client, chain(add=5))
    assert of_type(messages, "execution_cached")[0]["nodes"] == ["1"]
    assert testnodes.CALLS == [("TestAdd", "2"), ("TestOutput", "3")]
    assert of_type(messages, "executed")[0]["output"] == {"values": [6]}


async def test_is_changed_nan_always_reruns(client):
    prompt = {"1": {"class_type": "TestAlwaysChanged", "inputs": {"value": 4}},
              "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}
    await run_prompt(client, prompt)
    testnodes.CALLS.clear()
    _, messages = await run_prompt(client, prompt)
    assert ("TestAlwaysChanged", "1") in testnodes.CALLS
    assert of_type(messages, "execution_cached")[0]["nodes"] == []


async def test_list_outputs_map_over_downstream_nodes_and_input_is_list_gathers(client):
    prompt = {
        "1": {"class_type": "TestListOutput", "inputs": {"count": 4}},
        "2": {"class_type": "TestAdd", "inputs": {"a": ["1", 0], "b": 10}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "TestListSum", "inputs": {"values": ["2", 0]}},
        "5": {"class_type": "TestOutput", "inputs": {"value": ["4", 0]}},
    }
    prompt_id, _ = await run_prompt(client, prompt)
    outputs = (await (await client.get(f"/history/{prompt_id}")).json())[prompt_id]["outputs"]
    assert outputs["3"] == {"values": [10, 11, 12, 13]}
    assert outputs["5"] == {"values": [46]}


async def test_lazy_inputs_evaluate_only_the_requested_branch(client):
    prompt = {
        "1": {"class_type": "TestConstant", "inputs": {"value": 7}},
        "2": {"class_type": "TestConstant", "inputs": {"value": 9}},
        "3": {"class_type": "TestLazySwitch", "inputs": {"choose_a": False, "a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "TestOutput", "inputs": {"value": ["3", 0]}},
    }
    prompt_id, _ = await run_prompt(client, prompt)
    outputs = (await (await client.get(f"/history/{prompt_id}")).json())[prompt_id]["outputs"]
    assert outputs["4"] == {"values": [9]}
    ran = {node for _, node in testnodes.CALLS}
    assert "2" in ran and "1" not in ran


async def test_hidden_inputs_are_filled(client):
    prompt = {"7": {"class_type": "TestHidden", "inputs": {}}}
    prompt_id, _ = await run_prompt(client, prompt, extra_data={"extra_pnginfo": {"workflow": {"x": 1}}})
    outputs = (await (await client.get(f"/history/{prompt_id}")).json())[prompt_id]["outputs"]
    assert outputs["7"] == {"uid": ["7"], "nodes": ["7"], "extra": [{"workflow": {"x": 1}}]}


async def test_failing_node_fails_its_prompt_only_and_the_worker_keeps_serving(client):
    prompt = {
        "1": {"class_type": "TestConstant", "inputs": {"value": 1}},
        "2": {"class_type": "TestFail", "inputs": {"value": ["1", 0], "message": "kaput"}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
    }
    prompt_id, messages = await run_prompt(client, prompt)
    error = of_type(messages, "execution_error")[0]
    assert error["node_id"] == "2" and error["node_type"] == "TestFail"
    assert error["exception_type"] == "ValueError" and error["exception_message"] == "kaput\n"
    assert error["executed"] == ["1"] and error["current_inputs"] == {"value": [1], "message": ["kaput"]}
    assert isinstance(error["traceback"], list) and error["traceback"]
    assert not of_type(messages, "execution_success")
    entry = (await (await client.get(f"/history/{prompt_id}")).json())[prompt_id]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_error"

    ok_id, messages = await run_prompt(client, chain())
    assert of_type(messages, "execution_success")


async def test_interrupt_stops_a_running_prompt_inside_its_loop(client):
    ws = await client.ws_connect("/ws?clientId=intr")
    await next_message(ws)
    prompt = {
        "1": {"class_type": "TestConstant", "inputs": {"value": 1}},
        "2": {"class_type": "TestSlow", "inputs": {"value": ["1", 0], "steps": 500, "delay": 0.02}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
    }
    body = await (await client.post("/prompt", json={"prompt": prompt, "client_id": "intr"})).json()
    await messages_until(ws, lambda m: isinstance(m, dict) and m["type"] == "progress")
    resp = await client.post("/interrupt", json={"prompt_id": "not-running"})
    assert resp.status == 200
    resp = await client.post("/interrupt", data=b"")
    assert resp.status == 200
    messages = await messages_until(ws, run_finished(body["prompt_id"]))
    interrupted = of_type(messages, "execution_interrupted")
    assert interrupted and interrupted[0]["node_id"] == "2" and interrupted[0]["node_type"] == "TestSlow"
    progress = of_type(messages, "progress")
    assert not progress or progress[-1]["value"] < 500
    entry = (await (await client.get(f"/history/{body['prompt_id']}")).json())[body["prompt_id"]]
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    await ws.close()


async def test_progress_messages_report_value_and_max(client):
    prompt = {
        "1": {"class_type": "TestConstant", "inputs": {"value": 1}},
        "2": {"class_type": "TestSlow", "inputs": {"value": ["1", 0], "steps": 3, "delay": 0}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
    }
    prompt_id, messages = await run_prompt(client, prompt)
    assert of_type(messages, "progress") == [
        {"value": v, "max": 3, "prompt_id": prompt_id, "node": "2"} for v in (1, 2, 3)]


async def test_messages_go_to_the_client_that_queued_status_to_all(client):
    other = await client.ws_connect("/ws?clientId=bystander")
    await next_message(other)
    prompt_id, _ = await run_prompt(client, chain(value=40))
    seen = []
    while True:
        try:
            seen.append(await next_message(other, timeout=0.5))
        except asyncio.TimeoutError:
            break
    assert seen and all(m["type"] == "status" for m in seen)
    await other.close()


async def test_node_expansion_runs_the_subgraph_and_links_its_result(client):
    prompt = {
        "1": {"class_type": "TestConstant", "inputs": {"value": 21}},
        "2": {"class_type": "TestExpandDouble", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
    }
    prompt_id, messages = await run_prompt(client, prompt)
    executed = {d["node"]: d for d in of_type(messages, "executed")}
    assert executed["3"]["output"] == {"values": [42]}
    assert executed["2.report"]["display_node"] == "2" and executed["2.report"]["output"] == {"values": [42]}
    entry = (await (await client.get(f"/history/{prompt_id}")).json())[prompt_id]
    assert entry["prompt"][2] == prompt  # the stored prompt is the one submitted
    # real_node_id: the submitted node the expanded one descends from, as upstream reports it
    assert entry["meta"]["2.report"] == {"node_id": "2.report", "display_node": "2", "parent_node": "2",
                                         "real_node_id": "2"}
    testnodes.CALLS.clear()
    _, messages = await run_prompt(client, prompt)  # the expanded node is cached as a whole
    assert of_type(messages, "execution_cached")[0]["nodes"] == ["1", "2", "3"] and testnodes.CALLS == []


async def test_the_log_tells_what_happened(client, caplog):
    import logging

    caplog.set_level(logging.INFO)
    await run_prompt(client, chain(value=2))
    failing = {"1": {"class_type": "TestFail", "inputs": {"value": 1, "message": "logged failure"}},
               "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}
    await run_prompt(client, failing)
    await client.post("/prompt", json={"prompt": {"1": {"class_type": "TestOutput", "inputs": {}}}})
    text = caplog.text
    assert text.count("got prompt") == 2 and text.count("Prompt executed in") == 2
    assert "Error running node 1 (TestFail): logged failure" in text and "ValueError: logged failure" in text
    assert "invalid prompt: Prompt outputs failed validation" in text
