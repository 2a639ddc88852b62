"""Queue priority, delete/clear, history paging and deletion, /free, /prompt status."""
from __future__ import annotations

from tests.conftest import messages_until, next_message, run_finished, wait_history
from tests.server.test_execution import chain


def slow(value: int, steps: int = 200) -> dict:
    return {
        "1": {"class_type": "TestConstant", "inputs": {"value": value}},
        "2": {"class_type": "TestSlow", "inputs": {"value": ["1", 0], "steps": steps, "delay": 0.01}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
    }


async def queue_prompt(client, prompt, **extra) -> dict:
    resp = await client.post("/prompt", json={"prompt": prompt, **extra})
    assert resp.status == 200
    return await resp.json()


async def test_queue_shows_running_and_pending_and_front_jumps_ahead(client):
    ws = await client.ws_connect("/ws?clientId=q")
    await next_message(ws)
    running = await queue_prompt(client, slow(1), client_id="q")
    await messages_until(ws, lambda m: isinstance(m, dict) and m["type"] == "progress")
    a = await queue_prompt(client, chain(value=10))
    b = await queue_prompt(client, chain(value=20))
    c = await queue_prompt(client, chain(value=30), front=True)
    assert c["number"] < 0 < a["number"] < b["number"]

    queue = await (await client.get("/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == [running["prompt_id"]]
    assert [item[1] for item in queue["queue_pending"]] == [c["prompt_id"], a["prompt_id"], b["prompt_id"]]
    item = queue["queue_running"][0]
    assert len(item) == 5 and item[3] == {"client_id": "q"} and item[4] == ["3"]
    status = await (await client.get("/prompt")).json()
    assert status == {"exec_info": {"queue_remaining": 4}}

    assert (await client.post("/queue", json={"delete": [a["prompt_id"], "unknown"]})).status == 200
    queue = await (await client.get("/queue")).json()
    assert [item[1] for item in queue["queue_pending"]] == [c["prompt_id"], b["prompt_id"]]

    assert (await client.post("/queue", json={"clear": True})).status == 200
    queue = await (await client.get("/queue")).json()
    assert queue["queue_pending"] == [] and len(queue["queue_running"]) == 1
    await client.post("/interrupt")
    await messages_until(ws, run_finished(running["prompt_id"]))
    await ws.close()


async def test_secrets_in_extra_data_reach_the_node_and_are_never_served(client):
    secret = "comfyui-0123456789abcdef"
    ws = await client.ws_connect("/ws?clientId=s")
    await next_message(ws)
    running = await queue_prompt(client, slow(1), client_id="s")
    await messages_until(ws, lambda m: isinstance(m, dict) and m["type"] == "progress")
    keyed = await queue_prompt(client, {"1": {"class_type": "TestApiKey", "inputs": {}}}, client_id="s",
                               extra_data={"api_key_comfy_org": secret, "auth_token_comfy_org": secret})
    pending = (await (await client.get("/queue")).json())["queue_pending"]
    assert [item[1] for item in pending] == [keyed["prompt_id"]] and pending[0][3] == {"client_id": "s"}
    await client.post("/interrupt")
    entry = await wait_history(client, keyed["prompt_id"])
    assert entry["outputs"]["1"] == {"key_length": [len(secret)]}  # the node got it
    for path in ("/queue", "/history", f"/history/{keyed['prompt_id']}", "/api/jobs",
                 f"/api/jobs/{keyed['prompt_id']}"):
        assert secret not in await (await client.get(path)).text(), path
    await ws.close()


async def test_explicit_number_is_the_priority(client):
    ws = await client.ws_connect("/ws?clientId=n")
    await next_message(ws)
    running = await queue_prompt(client, slow(1), client_id="n")
    await messages_until(ws, lambda m: isinstance(m, dict) and m["type"] == "progress")
    late = await queue_prompt(client, chain(value=1), number=100)
    early = await queue_prompt(client, chain(value=2), number=5)
    assert early["number"] == 5.0
    queue = await (await client.get("/queue")).json()
    assert [item[1] for item in queue["queue_pending"]] == [early["prompt_id"], late["prompt_id"]]
    await client.post("/interrupt")
    await messages_until(ws, run_finished(running["prompt_id"]))
    await ws.close()


async def test_history_paging_delete_and_clear_keep_files(client, settings):
    ids = []
    for value in range(4):
        body = await queue_prompt(client, chain(value=value))
        await wait_history(client, body["prompt_id"])
        ids.append(body["prompt_id"])
    marker = settings.base_directory / "output" / "keep.txt"
    marker.write_text("saved output")

    everything = await (await client.get("/history")).json()
    assert list(everything) == ids
    assert list((await (await client.get("/history?max_items=1")).json())) == ids[-1:]
    assert list((await (await client.get("/history?max_items=2&offset=1")).json())) == ids[1:3]
    assert (await (await client.get("/history/unknown")).json()) == {}

    assert (await client.post("/history", json={"delete": [ids[0]]})).status == 200
    assert list((await (await client.get("/history")).json())) == ids[1:]
    assert (await client.post("/history", json={"clear": True})).status == 200
    assert (await (await client.get("/history")).json()) == {}
    assert marker.read_text() == "saved output"


async def test_odd_values_are_4xx_not_500(client):
    for query in ("max_items=abc", "max_items=-1", "offset=x"):
        resp = await client.get(f"/history?{query}")
        assert resp.status == 400, query
        assert "error" in await resp.json()
    for path in ("/queue", "/history"):
        for body in (b"{bad", b"[1]", b"{\"delete\": null}", b"{\"delete\": \"id\"}", b"{\"delete\": [1]}"):
            resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
            assert resp.status == 400, (path, body)
    assert (await client.post("/queue", json={})).status == 200
    assert (await client.post("/interrupt", json={"prompt_id": 5})).status == 400
    assert (await client.post("/free", data=b"{nope")).status == 400


async def test_free_accepts_comfyui_flags(client):
    for body in ({}, {"unload_models": True}, {"free_memory": True}):
        assert (await client.post("/free", json=body)).status == 200
    body = await queue_prompt(client, chain())
    entry = await wait_history(client, body["prompt_id"])
    assert entry["status"]["status_str"] == "success"


async def test_api_prefix_mirrors_routes(client):
    for path in ("/queue", "/history", "/prompt", "/object_info", "/features", "/system_stats"):
        bare = await client.get(path)
        mirrored = await client.get("/api" + path)
        assert bare.status == mirrored.status == 200, path
    assert (await client.get("/api/no/such/route")).status == 404
