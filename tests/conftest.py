"""Shared fixtures: a real comfyd app served on 127.0.0.1 (random port) with the test node pack."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from engine import Settings
from server.app import build_registry, create_app
from tests import testnodes


def _forbidden_skips(config) -> int:
    """With COMFYD_NO_SKIPS set (CI, where every optional system part is installed), how many tests skipped."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return len(reporter.stats.get("skipped", [])) if reporter and os.environ.get("COMFYD_NO_SKIPS") else 0


def pytest_terminal_summary(terminalreporter, config):
    if skipped := _forbidden_skips(config):
        terminalreporter.write_sep("=", f"{skipped} skipped with COMFYD_NO_SKIPS set: the run fails", red=True)


def pytest_sessionfinish(session, exitstatus):
    if _forbidden_skips(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(base_directory=tmp_path, cpu=True)


@pytest.fixture
def registry(settings):
    reg = build_registry(settings)
    reg.register_module(testnodes, python_module="tests")
    return reg


@pytest.fixture
async def client(aiohttp_client, settings, registry):
    testnodes.CALLS.clear()
    app = create_app(settings, registry)
    return await aiohttp_client(app)


async def next_message(ws, timeout: float = 60.0) -> dict | bytes:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    if msg.type.name == "TEXT":
        return json.loads(msg.data)
    if msg.type.name == "BINARY":
        return msg.data
    raise AssertionError(f"websocket closed: {msg}")


async def messages_until(ws, predicate, timeout: float = 300.0) -> list:
    """Collect websocket messages up to and including the first that satisfies `predicate`."""
    collected = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        message = await next_message(ws, max(remaining, 0.01))
        collected.append(message)
        if predicate(message):
            return collected


def run_finished(prompt_id: str):
    """Predicate: the final `executing` with node null for this prompt."""
    return lambda m: isinstance(m, dict) and m.get("type") == "executing" and m["data"].get("node") is None \
        and m["data"].get("prompt_id") == prompt_id


async def run_prompt(client, prompt: dict, client_id: str = "tester", **extra) -> tuple[str, list]:
    """Queue a prompt with a websocket open; return (prompt_id, every message until it finished)."""
    ws = await client.ws_connect(f"/ws?clientId={client_id}")
    await next_message(ws)  # initial status
    resp = await client.post("/prompt", json={"prompt": prompt, "client_id": client_id, **extra})
    body = await resp.json()
    assert resp.status == 200, body
    messages = await messages_until(ws, run_finished(body["prompt_id"]))
    await ws.close()
    return body["prompt_id"], messages


def of_type(messages: list, kind: str) -> list[dict]:
    return [m["data"] for m in messages if isinstance(m, dict) and m.get("type") == kind]


async def wait_history(client, prompt_id: str, timeout: float = 300.0) -> dict:
    """The history entry of `prompt_id` once it has finished."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        history = await (await client.get(f"/history/{prompt_id}")).json()
        if history:
            return history[prompt_id]
        await asyncio.sleep(0.02)
    raise AssertionError(f"prompt {prompt_id} did not finish within {timeout}s")
