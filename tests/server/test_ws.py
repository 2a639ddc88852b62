"""The /ws endpoint: handshake, feature flags, binary frames, slow clients."""
from __future__ import annotations

import asyncio
import base64
import os
import struct

import pytest

from engine import Settings
from server.app import create_app
from server.keys import HUB
from server.ws import PREVIEW_BACKLOG, _Client
from tests.conftest import messages_until, next_message, run_finished, wait_history


async def test_status_on_connect_with_given_or_generated_sid(client):
    ws = await client.ws_connect("/ws?clientId=abc")
    assert await next_message(ws) == {"type": "status",
                                      "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "abc"}}
    await ws.close()
    ws = await client.ws_connect("/ws")
    first = await next_message(ws)
    assert len(first["data"]["sid"]) == 32 and int(first["data"]["sid"], 16) >= 0
    await ws.close()


async def test_feature_flags_are_negotiated_on_the_first_message(client):
    ws = await client.ws_connect("/ws?clientId=ff")
    await next_message(ws)
    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    reply = await next_message(ws)
    assert reply == {"type": "feature_flags",
                     "data": {"supports_preview_metadata": True, "max_upload_size": 100 * 1024 * 1024}}
    await ws.send_str("not json")  # ignored, the connection stays up
    resp = await client.post("/prompt", json={"prompt": {"1": {"class_type": "TestHidden", "inputs": {}}},
                                              "client_id": "ff"})
    body = await resp.json()
    await messages_until(ws, run_finished(body["prompt_id"]))
    await ws.close()


async def test_binary_frames_carry_the_event_type_header(client):
    hub = client.app[HUB]
    ws = await client.ws_connect("/ws?clientId=bin")
    await next_message(ws)
    hub.send_bytes(1, struct.pack(">I", 2) + b"\x89PNG....", "bin", droppable=False)
    frame = await next_message(ws)
    assert frame[:8] == struct.pack(">II", 1, 2) and frame[8:] == b"\x89PNG...."
    await ws.close()


class RawClient:
    """A websocket client that completes the handshake and then never reads."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, client_id: str) -> "RawClient":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer)


@pytest.fixture
def settings(tmp_path):
    return Settings(base_directory=tmp_path, cpu=True, ws_send_queue=64)


async def test_a_client_that_stops_reading_delays_nobody_and_is_dropped(client):
    raw = await RawClient.connect(client.port, "stuck")
    raw.writer.transport.set_write_buffer_limits(0)
    raw.writer.transport.pause_reading()  # stop reading: the kernel buffers fill, then the server's sends block
    prompt = {
        "1": {"class_type": "TestConstant", "inputs": {"value": 1}},
        "2": {"class_type": "TestSlow", "inputs": {"value": ["1", 0], "steps": 10000, "delay": 0}},
        "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}},
    }
    body = await (await client.post("/prompt", json={"prompt": prompt, "client_id": "stuck"})).json()
    entry = await wait_history(client, body["prompt_id"])
    assert entry["status"]["status_str"] == "success"

    hub = client.app[HUB]
    assert "stuck" not in hub.clients  # dropped past its bound
    watcher = await client.ws_connect("/ws?clientId=watcher")
    await next_message(watcher)
    second = await (await client.post("/prompt", json={"prompt": prompt | {"2": {**prompt["2"], "inputs": {
        **prompt["2"]["inputs"], "steps": 3}}}, "client_id": "watcher"})).json()
    await messages_until(watcher, run_finished(second["prompt_id"]))
    await watcher.close()
    raw.writer.close()


async def test_previews_are_dropped_before_a_client_is():
    c = _Client("x", None, bound=PREVIEW_BACKLOG + 2)
    accepted = [c.offer(b"preview", droppable=True) for _ in range(3 * PREVIEW_BACKLOG)]
    assert all(accepted) and c.queue.qsize() == PREVIEW_BACKLOG
    assert c.offer("json", droppable=False) and c.offer("json", droppable=False)
    assert c.offer("json", droppable=False) is False  # full: the hub must drop this client
