"""extra_data.webhook_url: the result is POSTed to a local receiver when the prompt ends, failed deliveries are
retried with backoff, a hanging receiver never holds up the queue, and unusable URLs are refused at submission."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from server.keys import WEBHOOKS
from tests.conftest import wait_history
from tests.server.test_v1 import failing_prompt, slow_prompt, value_prompt
from tests.test_openapi import schema_errors, spec  # noqa: F401  (spec is a fixture)


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers each POST with the next of `statuses` (the last repeats);
    with `hang`, only once `release` is set."""

    def __init__(self, statuses=(200,), hang: bool = False):
        self.statuses = list(statuses)
        self.hang = hang
        self.release = asyncio.Event()
        self.bodies: list[dict] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.arrived.set()
        if self.hang:
            await self.release.wait()
        status = self.statuses[min(len(self.bodies), len(self.statuses)) - 1]
        return web.Response(status=status)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        async def enough():
            while len(self.bodies) < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(enough(), timeout)
        return self.bodies


@pytest.fixture
def serve_receiver(aiohttp_server):
    async def serve(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        server = await aiohttp_server(app, host="127.0.0.1")
        return str(server.make_url("/hook"))
    return serve


@pytest.fixture
def fast_retries(client):
    client.app[WEBHOOKS].backoff = 0.01
    return client


async def queue(client, prompt: dict, url) -> str:
    resp = await client.post("/prompt", json={"prompt": prompt, "extra_data": {"webhook_url": url}})
    body = await resp.json()
    assert resp.status == 200, body
    return body["prompt_id"]


async def test_the_result_is_posted_when_the_prompt_ends(client, serve_receiver, spec):
    receiver = Receiver()
    url = await serve_receiver(receiver)
    prompt_id = await queue(client, value_prompt(7), url)
    [body] = await receiver.wait_for(1)
    entry = await wait_history(client, prompt_id)
    assert body == {"prompt_id": prompt_id, "status": entry["status"], "outputs": entry["outputs"]}
    assert body["status"]["status_str"] == "success" and body["status"]["completed"] is True
    assert body["outputs"] == {"2": {"values": [7]}}
    assert entry["prompt"][3]["webhook_url"] == url  # kept in extra_data like any other key
    assert schema_errors(spec, body, {"$ref": "#/components/schemas/WebhookPayload"}) == []


async def test_a_failed_prompt_is_posted_with_its_error(client, serve_receiver):
    receiver = Receiver()
    prompt_id = await queue(client, failing_prompt("kaput"), await serve_receiver(receiver))
    [body] = await receiver.wait_for(1)
    assert body["prompt_id"] == prompt_id and body["status"]["status_str"] == "error"
    assert body["status"]["completed"] is False
    assert "execution_error" in [name for name, _ in body["status"]["messages"]]


async def test_a_prompt_deleted_from_the_queue_is_posted_as_interrupted(client, serve_receiver):
    receiver = Receiver()
    url = await serve_receiver(receiver)
    running = await queue(client, slow_prompt(1), None)
    pending = await queue(client, value_prompt(), url)
    assert (await client.post("/queue", json={"delete": [pending]})).status == 200
    [body] = await receiver.wait_for(1)
    assert body["prompt_id"] == pending and body["status"]["status_str"] == "error"
    assert "execution_interrupted" in [name for name, _ in body["status"]["messages"]]
    await client.post("/interrupt", json={"prompt_id": running})


async def test_the_v1_api_posts_too(client, serve_receiver):
    receiver = Receiver()
    resp = await client.post("/api/v1/prompts", json={"prompt": value_prompt(4),
                                                      "extra_data": {"webhook_url": await serve_receiver(receiver)}})
    assert resp.status == 200, await resp.text()
    [body] = await receiver.wait_for(1)
    assert body["status"]["status_str"] == "success" and body["outputs"] == {"2": {"values": [4]}}


async def test_server_errors_are_retried_until_delivered(fast_retries, serve_receiver):
    receiver = Receiver(statuses=(503, 500, 200))
    prompt_id = await queue(fast_retries, value_prompt(), await serve_receiver(receiver))
    bodies = await receiver.wait_for(3)
    assert [b["prompt_id"] for b in bodies] == [prompt_id] * 3
    await asyncio.sleep(0.2)
    assert len(receiver.bodies) == 3


async def test_delivery_gives_up_after_three_tries(fast_retries, serve_receiver):
    receiver = Receiver(statuses=(500,))
    await queue(fast_retries, value_prompt(), await serve_receiver(receiver))
    await receiver.wait_for(3)
    await asyncio.sleep(0.2)
    assert len(receiver.bodies) == 3


async def test_a_refusal_by_the_receiver_is_not_retried(fast_retries, serve_receiver):
    receiver = Receiver(statuses=(404,))
    await queue(fast_retries, value_prompt(), await serve_receiver(receiver))
    await receiver.wait_for(1)
    await asyncio.sleep(0.2)
    assert len(receiver.bodies) == 1


async def test_an_unreachable_receiver_does_not_disturb_the_queue(fast_retries, unused_tcp_port):
    prompt_id = await queue(fast_retries, value_prompt(), f"http://127.0.0.1:{unused_tcp_port}/hook")
    assert (await wait_history(fast_retries, prompt_id))["status"]["status_str"] == "success"
    follow_up = await queue(fast_retries, value_prompt(5), None)
    assert (await wait_history(fast_retries, follow_up))["outputs"] == {"2": {"values": [5]}}


async def test_a_hanging_receiver_never_blocks_the_worker(client, serve_receiver):
    receiver = Receiver(hang=True)
    url = await serve_receiver(receiver)
    first = await queue(client, value_prompt(1), url)
    second = await queue(client, value_prompt(2), url)
    # Both prompts finish while their deliveries are still waiting for an answer.
    for prompt_id in (first, second):
        assert (await wait_history(client, prompt_id))["status"]["status_str"] == "success"
    await receiver.wait_for(2)
    receiver.release.set()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "file:///etc/passwd", "/relative/hook", "http://",
                                 "javascript:alert(1)", "", 5, ["http://127.0.0.1/"], "http://" + "a" * 3000])
@pytest.mark.parametrize("path", ["/prompt", "/api/prompt", "/api/v1/prompts"])
async def test_unusable_urls_are_refused(client, path, url):
    resp = await client.post(path, json={"prompt": value_prompt(), "extra_data": {"webhook_url": url}})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] == "invalid_prompt" and "webhook_url" in body["error"]["message"]
    assert (await (await client.get("/queue")).json()) == {"queue_running": [], "queue_pending": []}
