"""Property-based fuzzing of the live app from openapi.yaml: every operation gets a bounded, seeded set of
generated requests; no answer may be a 5xx, have an undocumented status or content type, or a body outside
its schema."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from engine import Settings
from server.app import build_registry, create_app
from tests import testnodes

SPEC_FILE = Path(__file__).resolve().parents[1] / "openapi.yaml"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REQUEST_TIMEOUT = 15  # seconds; a hung handler fails the case instead of the whole run

# The websocket upgrade is not a request/response operation.
schema = schemathesis.openapi.from_path(SPEC_FILE).exclude(path="/ws")


class LiveServer:
    """The real app on 127.0.0.1 (a free port), served from its own event loop in a background thread: schemathesis
    sends its requests synchronously."""

    def __init__(self, app: web.Application):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="schemathesis-server", daemon=True)
        self._runner = web.AppRunner(app)
        self.base_url = ""

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(30)

    async def _serve(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    app_settings = Settings(base_directory=tmp_path_factory.mktemp("comfyd"), cpu=True)
    registry = build_registry(app_settings)
    registry.register_module(testnodes, python_module="tests")
    server = LiveServer(create_app(app_settings, registry))
    server.start()
    yield server.base_url
    server.stop()


@schema.parametrize()
# Seeded and bounded for CI; health checks would only flag slow generation of the larger bodies.
@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, base_url):
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=REQUEST_TIMEOUT)
