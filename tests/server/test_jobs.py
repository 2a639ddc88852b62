"""The job view (/api/jobs): statuses from the queue and the history, filters, paging, sorting, detail, assets,
and cancelling pending and running jobs."""
from __future__ import annotations

import asyncio
import io

from PIL import Image

from tests.conftest import wait_history
from tests.server.test_v1 import failing_prompt, image_prompt, slow_prompt, value_prompt, wait_running
from tests.test_openapi import conforms, spec  # noqa: F401  (spec is a fixture)


async def queue(client, prompt: dict, **extra) -> str:
    resp = await client.post("/prompt", json={"prompt": prompt, **extra})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["prompt_id"]


async def jobs(client, query: str = "") -> dict:
    resp = await client.get(f"/api/jobs{query}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def ids(client, query: str = "") -> list[str]:
    return [job["id"] for job in (await jobs(client, query))["jobs"]]


async def until_status(client, job_id: str, status: str, timeout: float = 300.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        job = await (await client.get(f"/api/jobs/{job_id}")).json()
        if job.get("status") == status:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never became {status}")


async def one_of_each(client) -> dict[str, str]:
    """A job in every status: completed, failed, cancelled (interrupted), in_progress, and pending."""
    made = {"completed": await queue(client, image_prompt(color=0x00FF00, prefix="done"),
                                     extra_data={"extra_pnginfo": {"workflow": {"id": "wf-1"}}})}
    await wait_history(client, made["completed"])
    made["failed"] = await queue(client, failing_prompt())
    await wait_history(client, made["failed"])
    made["cancelled"] = await queue(client, slow_prompt(1))
    await wait_running(client, made["cancelled"])
    await client.post("/interrupt")
    await wait_history(client, made["cancelled"])
    made["in_progress"] = await queue(client, slow_prompt(2))
    await wait_running(client, made["in_progress"])
    made["pending"] = await queue(client, value_prompt(3))
    return made


async def finish(client, made: dict[str, str]) -> None:
    await client.post("/queue", json={"clear": True})
    await client.post("/interrupt")
    await wait_history(client, made["in_progress"])


async def test_no_jobs(client, spec):
    body = await conforms(spec, client, "GET", "/api/jobs", 200)
    assert body == {"jobs": [], "pagination": {"offset": 0, "limit": None, "total": 0, "has_more": False}}


async def test_every_status_and_each_filter(client, spec):
    made = await one_of_each(client)
    try:
        body = await conforms(spec, client, "GET", "/api/jobs", 200)
        assert {job["id"]: job["status"] for job in body["jobs"]} == {v: k for k, v in made.items()}
        for status, job_id in made.items():
            assert await ids(client, f"?status={status}") == [job_id]
        assert set(await ids(client, "?status=in_progress,pending")) == {made["in_progress"], made["pending"]}
        assert set(await ids(client, "?status=completed, FAILED,cancelled")) == {
            made["completed"], made["failed"], made["cancelled"]}
        assert await ids(client, "?workflow_id=wf-1") == [made["completed"]]
        await conforms(spec, client, "GET", "/api/jobs?status=in_progress,pending&limit=200&offset=0", 200)
    finally:
        await finish(client, made)


async def test_job_fields(client, spec):
    made = await one_of_each(client)
    try:
        by_id = {job["id"]: job for job in (await jobs(client))["jobs"]}
        completed = by_id[made["completed"]]
        assert completed["workflow_id"] == "wf-1" and completed["outputs_count"] == 1
        assert completed["previewable_outputs_count"] == 1
        assert completed["preview_output"] == {"filename": "done_00001_.png", "subfolder": "", "type": "output",
                                               "nodeId": "2", "mediaType": "images"}
        assert completed["execution_start_time"] <= completed["execution_end_time"]
        assert completed["create_time"] <= completed["execution_start_time"]
        failed = by_id[made["failed"]]
        assert failed["execution_error"]["node_type"] == "TestFail"
        assert failed["execution_error"]["exception_message"] == "boom\n"
        assert "preview_output" not in failed and "workflow_id" not in failed
        pending = by_id[made["pending"]]
        assert set(pending) == {"id", "status", "priority", "create_time", "outputs_count",
                                "previewable_outputs_count"}
        queue_state = await (await client.get("/queue")).json()
        assert pending["priority"] == queue_state["queue_pending"][0][0]
        assert "execution_start_time" not in by_id[made["in_progress"]]
    finally:
        await finish(client, made)


async def test_paging_and_sorting(client, spec):
    made = [await queue(client, value_prompt(value)) for value in range(5)]
    await wait_history(client, made[-1])
    newest_first = await ids(client)
    assert newest_first == made[::-1]
    assert await ids(client, "?sort_order=asc") == made
    assert await ids(client, "?sort_order=ASC&sort_by=created_at") == made
    page = await conforms(spec, client, "GET", "/api/jobs?limit=2&offset=1", 200)
    assert [job["id"] for job in page["jobs"]] == newest_first[1:3]
    assert page["pagination"] == {"offset": 1, "limit": 2, "total": 5, "has_more": True}
    last = await jobs(client, "?limit=2&offset=4")
    assert last["pagination"] == {"offset": 4, "limit": 2, "total": 5, "has_more": False}
    assert (await jobs(client, "?offset=-3"))["pagination"]["offset"] == 0
    by_duration = await jobs(client, "?sort_by=execution_duration&sort_order=desc")
    durations = [job["execution_end_time"] - job["execution_start_time"] for job in by_duration["jobs"]]
    assert durations == sorted(durations, reverse=True)


async def test_bad_queries_are_400_with_upstream_error_body(client, spec):
    for query, message in (("?status=done", "Invalid status value(s): done"), ("?limit=0", "positive"),
                           ("?limit=x", "limit must be an integer"), ("?offset=x", "offset must be an integer"),
                           ("?sort_by=name", "sort_by"), ("?sort_order=up", "sort_order")):
        body = await conforms(spec, client, "GET", f"/api/jobs{query}", 400)
        assert message in body["error"]


async def test_job_detail(client, spec):
    made = await one_of_each(client)
    try:
        completed = await conforms(spec, client, "GET", f"/api/jobs/{made['completed']}", 200)
        assert completed["status"] == "completed"
        assert completed["outputs"]["2"]["images"][0]["filename"] == "done_00001_.png"
        assert completed["execution_status"]["status_str"] == "success"
        assert completed["workflow"] == {"prompt": image_prompt(color=0x00FF00, prefix="done"),
                                         "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-1"}}}}
        pending = await conforms(spec, client, "GET", f"/api/jobs/{made['pending']}", 200)
        assert pending["status"] == "pending" and "outputs" not in pending
        assert pending["workflow"]["prompt"] == value_prompt(3)
        running = await conforms(spec, client, "GET", f"/jobs/{made['in_progress']}", 200)
        assert running["status"] == "in_progress"
        body = await conforms(spec, client, "GET", "/api/jobs/no-such-job", 404)
        assert body == {"error": "Job not found"}
    finally:
        await finish(client, made)


async def test_job_assets(client, spec):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 3, "batch_size": 2, "color": 0xFF}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "asset"}},
    }
    job_id = await queue(client, prompt)
    await wait_history(client, job_id)
    body = await conforms(spec, client, "GET", f"/api/jobs/{job_id}/assets", 200)
    assert [asset["name"] for asset in body["assets"]] == ["asset_00001_.png", "asset_00002_.png"]
    first = body["assets"][0]
    assert first == {"id": f"{job_id}:0", "name": "asset_00001_.png",
                     "preview_url": "/api/view?filename=asset_00001_.png&subfolder=&type=output",
                     "filename": "asset_00001_.png", "subfolder": "", "type": "output", "node_id": "2",
                     "media_type": "images"}
    image = await client.get(first["preview_url"])
    assert Image.open(io.BytesIO(await image.read())).size == (4, 3)
    assert body["pagination"] == {"offset": 0, "limit": None, "total": 2, "has_more": False}
    page = await conforms(spec, client, "GET", f"/api/jobs/{job_id}/assets?limit=1&offset=1", 200)
    assert [a["name"] for a in page["assets"]] == ["asset_00002_.png"] and not page["pagination"]["has_more"]
    await conforms(spec, client, "GET", f"/api/jobs/{job_id}/assets?limit=-1", 400)
    assert (await conforms(spec, client, "GET", "/api/jobs/nope/assets", 404)) == {"error": "Job not found"}
    no_files = await queue(client, value_prompt(5))
    await wait_history(client, no_files)
    assert (await jobs(client, f"/{no_files}/assets"))["assets"] == []


async def test_cancel_a_pending_job(client, spec):
    running = await queue(client, slow_prompt(40))
    await wait_running(client, running)
    pending = await queue(client, value_prompt(41))
    assert await conforms(spec, client, "POST", f"/api/jobs/{pending}/cancel", 200) == {"cancelled": True}
    job = await (await client.get(f"/api/jobs/{pending}")).json()
    assert job["status"] == "cancelled" and "execution_start_time" not in job
    queue_state = await (await client.get("/queue")).json()
    assert queue_state["queue_pending"] == []
    assert await (await client.get(f"/history/{pending}")).json() == {}  # as upstream: it never ran
    assert await ids(client, "?status=cancelled") == [pending]
    assert await (await client.post(f"/api/jobs/{pending}/cancel")).json() == {"cancelled": False}
    await client.post("/interrupt")
    await wait_history(client, running)


async def test_cancel_a_running_job_interrupts_it(client, spec):
    running = await queue(client, slow_prompt(50))
    await wait_running(client, running)
    assert await (await client.post(f"/jobs/{running}/cancel")).json() == {"cancelled": True}
    job = await until_status(client, running, "cancelled")
    assert [kind for kind, _ in job["execution_status"]["messages"]][-1] == "execution_interrupted"
    history = await wait_history(client, running)
    assert history["status"]["status_str"] == "error"
    assert await (await client.post(f"/api/jobs/{running}/cancel")).json() == {"cancelled": False}
    assert await (await client.post("/api/jobs/unknown/cancel")).json() == {"cancelled": False}


async def test_cancel_several_jobs(client, spec):
    done = await queue(client, value_prompt(60))
    await wait_history(client, done)
    running = await queue(client, slow_prompt(61))
    await wait_running(client, running)
    pending = [await queue(client, value_prompt(value)) for value in (62, 63)]
    body = await conforms(spec, client, "POST", "/api/jobs/cancel", 200,
                          json={"job_ids": [done, *pending, running, "unknown"]})
    assert body == {"cancelled": True}
    for job_id in (*pending, running):
        await until_status(client, job_id, "cancelled")
    assert (await (await client.get(f"/api/jobs/{done}")).json())["status"] == "completed"
    assert await (await client.post("/api/jobs/cancel", json={"job_ids": [done]})).json() == {"cancelled": False}

    for kwargs, error in (({"data": b"{"}, "Request body must be valid JSON"),
                          ({"json": {"job_ids": "x"}}, "job_ids must be a list"),
                          ({"json": [1]}, "job_ids must be a list"),
                          ({"json": {"job_ids": ["ok", 5, ""]}}, "job_ids contains invalid id(s)")):
        body = await conforms(spec, client, "POST", "/api/jobs/cancel", 400, **kwargs)
        assert body["error"] == error
    assert body["invalid_ids"] == ["5", ""]
