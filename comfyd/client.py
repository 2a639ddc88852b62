"""A client for a running comfyd (or ComfyUI) server: `/api/v1/prompts`, or ComfyUI's own `/prompt` + `/ws`.

    async with RemoteComfyClient("http://127.0.0.1:8188") as client:
        png = await client.queue_prompt(prompt)              # image bytes of the first image output
        outputs = await client.queue_prompt_ws(prompt)       # ComfyUI's routes and websocket, with progress

`RemoteComfyClientSync` wraps the same calls for code without an event loop.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Callable

import aiohttp


class ComfyClientError(Exception):
    """The server refused or failed a request; `status` and `body` are its answer."""

    def __init__(self, message: str, status: int | None = None, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


class PromptValidationError(ComfyClientError):
    """400: the prompt failed validation; `body` is ComfyUI's `{error, node_errors}`."""


class PromptExecutionError(ComfyClientError):
    """The prompt failed or was interrupted while running; `body` is the error message data."""


async def _error(resp: aiohttp.ClientResponse) -> ComfyClientError:
    text = await resp.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    if resp.status == 400 and isinstance(body, dict) and "node_errors" in body:
        error = body.get("error") or {}
        message = error.get("message", "invalid prompt") if isinstance(error, dict) else str(error)
        return PromptValidationError(message, resp.status, body)
    if resp.status == 500 and isinstance(body, dict):
        return PromptExecutionError("the prompt failed while running", resp.status, body)
    return ComfyClientError(f"{resp.method} {resp.url.path} answered {resp.status}", resp.status, body)


class RemoteComfyClient:
    def __init__(self, server_address: str = "http://127.0.0.1:8188", client_id: str | None = None):
        self.server_address = server_address.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "RemoteComfyClient":
        self._session = aiohttp.ClientSession(self.server_address, timeout=aiohttp.ClientTimeout(total=None))
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use `async with RemoteComfyClient(...) as client:`")
        return self._session

    # -- /api/v1 ------------------------------------------------------------------------------------------------

    async def queue_prompt(self, prompt: dict, accept: str = "image/png") -> bytes | None:
        """Run a prompt and return the bytes of its first image output (None when it has no image output)."""
        async with self.session.post("/api/v1/prompts", json=prompt, headers={"Accept": accept}) as resp:
            if resp.status == 204:
                return None
            if resp.status != 200:
                raise await _error(resp)
            return await resp.read()

    async def queue_prompt_api(self, prompt: dict) -> dict:
        """Run a prompt and return `{"urls", "outputs", "prompt_id"}`."""
        async with self.session.post("/api/v1/prompts", json=prompt, headers={"Accept": "application/json"}) as resp:
            if resp.status != 200:
                raise await _error(resp)
            return await resp.json()

    # -- ComfyUI's own routes -------------------------------------------------------------------------------

    async def queue_prompt_ws(self, prompt: dict, on_event: Callable[[str, object], None] | None = None,
                              extra_data: dict | None = None) -> dict:
        """Queue through POST /prompt, follow the websocket until the prompt ends, return its history outputs.
        `on_event(type, data)` sees every message for the prompt (progress, executing, ...; previews as bytes)."""
        async with self.session.ws_connect(f"/ws?clientId={self.client_id}") as ws:
            body = {"prompt": prompt, "client_id": self.client_id, "extra_data": extra_data or {}}
            async with self.session.post("/prompt", json=body) as resp:
                if resp.status != 200:
                    raise await _error(resp)
                prompt_id = (await resp.json())["prompt_id"]
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    if on_event:
                        on_event("preview", msg.data[4:])
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                message = json.loads(msg.data)
                kind, data = message.get("type"), message.get("data", {})
                if isinstance(data, dict) and data.get("prompt_id") not in (None, prompt_id):
                    continue
                if on_event:
                    on_event(kind, data)
                if kind in ("execution_error", "execution_interrupted"):
                    raise PromptExecutionError(data.get("exception_message", kind).strip(), None, data)
                if kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
        history = await self.get_history(prompt_id)
        return history.get(prompt_id, {}).get("outputs", {})

    async def upload_image(self, data: bytes, filename: str, *, subfolder: str = "", kind: str = "input",
                           overwrite: bool = False) -> dict:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename)
        form.add_field("subfolder", subfolder)
        form.add_field("type", kind)
        form.add_field("overwrite", "true" if overwrite else "false")
        async with self.session.post("/api/upload/image", data=form) as resp:
            if resp.status != 200:
                raise await _error(resp)
            return await resp.json()

    async def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        async with self.session.get("/api/view", params=params) as resp:
            if resp.status != 200:
                raise await _error(resp)
            return await resp.read()

    async def get_history(self, prompt_id: str | None = None, max_items: int | None = None) -> dict:
        path = f"/api/history/{prompt_id}" if prompt_id else "/api/history"
        params = {"max_items": str(max_items)} if max_items is not None else None
        async with self.session.get(path, params=params) as resp:
            if resp.status != 200:
                raise await _error(resp)
            return await resp.json()

    async def object_info(self) -> dict:
        async with self.session.get("/api/object_info") as resp:
            if resp.status != 200:
                raise await _error(resp)
            return await resp.json()

    async def interrupt(self, prompt_id: str | None = None) -> None:
        async with self.session.post("/api/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}) as resp:
            if resp.status != 200:
                raise await _error(resp)


class RemoteComfyClientSync:
    """The same calls, blocking: `RemoteComfyClientSync(url).queue_prompt(prompt)`."""

    def __init__(self, server_address: str = "http://127.0.0.1:8188"):
        self.server_address = server_address

    def _call(self, name: str, *args, **kwargs):
        async def run():
            async with RemoteComfyClient(self.server_address) as client:
                return await getattr(client, name)(*args, **kwargs)

        return asyncio.run(run())

    def __getattr__(self, name: str):
        if name.startswith("_") or not hasattr(RemoteComfyClient, name):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)
