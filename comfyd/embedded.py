"""Run ComfyUI API-format prompts in process: `async with Comfy() as client: await client.queue_prompt(prompt)`."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import AsyncIterator

from engine import Engine, Settings


class PromptInvalid(Exception):
    """The prompt failed validation; `error` and `node_errors` are ComfyUI's validation body."""

    def __init__(self, error: dict, node_errors: dict):
        super().__init__(f"{error.get('message')}: {error.get('details')}".rstrip(": "))
        self.error = error
        self.node_errors = node_errors


class PromptFailed(Exception):
    """A node failed or the prompt was interrupted; `data` is the `execution_error`/`execution_interrupted` body."""

    def __init__(self, kind: str, data: dict):
        super().__init__(data.get("exception_message", kind).strip())
        self.kind = kind
        self.data = data


class _Sink:
    """EventSink that hands engine events (worker thread) to per-prompt asyncio queues (event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queues: dict[str, asyncio.Queue] = {}

    def send(self, event, data, sid=None):
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if prompt_id is not None:
            self.loop.call_soon_threadsafe(self._put, prompt_id, (event, data))

    def send_bytes(self, event_type, payload, sid=None, *, droppable=True, metadata=None):
        if sid is not None:  # the embedded client uses the prompt id as the client id
            self.loop.call_soon_threadsafe(self._put, sid, ("preview", payload))

    def queue_changed(self):
        pass

    def _put(self, prompt_id, item):
        queue = self.queues.get(prompt_id)
        if queue is not None:
            queue.put_nowait(item)


class Comfy:
    """An engine in this process. Models load on first use and are released on exit."""

    def __init__(self, base_directory: str | Path | None = None, *, cpu: bool = False, registry=None, **settings):
        self.settings = Settings(base_directory=Path(base_directory or Path.cwd()).resolve(), cpu=cpu, **settings)
        self._registry = registry
        self.engine: Engine | None = None
        self._sink: _Sink | None = None

    async def __aenter__(self) -> "Comfy":
        from server.app import build_registry
        from server.compat import PromptServer

        self._sink = _Sink(asyncio.get_running_loop())
        prompt_server = PromptServer(self._sink)  # custom nodes reach it at import, as in a server
        registry = self._registry or await asyncio.to_thread(build_registry, self.settings)
        self.engine = prompt_server.engine = Engine(self.settings, registry, self._sink)
        self.engine.start()
        return self

    async def __aexit__(self, *exc) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await asyncio.to_thread(engine.stop)
            engine.unload_models()

    async def queue_with_progress(self, prompt: dict, extra_data: dict | None = None) -> AsyncIterator[tuple[str, object]]:
        """Yield `(event, data)` for a prompt as it runs (progress, executing, executed, previews as bytes...);
        the last item is ("outputs", outputs). Raises PromptInvalid / PromptFailed."""
        if self.engine is None:
            raise RuntimeError("use `async with Comfy() as client:`")
        result = await asyncio.to_thread(self.engine.validate, prompt)
        if not result.ok:
            raise PromptInvalid(result.error, result.node_errors)
        prompt_id = str(uuid.uuid4())
        queue: asyncio.Queue = asyncio.Queue()
        self._sink.queues[prompt_id] = queue
        # The history record is the end of a prompt: watch for it rather than for execution_success, which
        # the executor sends before the worker records the result.
        unwatch = self.engine.watch(prompt_id, lambda record: self._sink.loop.call_soon_threadsafe(
            self._sink._put, prompt_id, ("finished", record)))
        try:
            self.engine.submit(prompt, result.outputs, prompt_id=prompt_id,
                               extra_data={**(extra_data or {}), "client_id": prompt_id})
            while True:
                event, data = await queue.get()
                if event != "finished":
                    yield event, data
                    continue
                status = data.entry["status"]
                if status["status_str"] != "success":
                    kind, body = status["messages"][-1] if status["messages"] else ("execution_error", {})
                    raise PromptFailed(kind, body)
                yield "outputs", self._with_paths(data.entry["outputs"])
                return
        finally:
            unwatch()
            self._sink.queues.pop(prompt_id, None)

    async def queue_prompt(self, prompt: dict, extra_data: dict | None = None) -> dict:
        """Run a prompt to completion; return its outputs by node id (images carry `abs_path`)."""
        outputs = {}
        async for event, data in self.queue_with_progress(prompt, extra_data):
            if event == "outputs":
                outputs = data
        return outputs

    def _with_paths(self, outputs: dict) -> dict:
        folders = self.engine.folders
        result = {}
        for node_id, ui in outputs.items():
            result[node_id] = dict(ui)
            for key, items in ui.items():
                if isinstance(items, list) and all(isinstance(i, dict) and "filename" in i for i in items):
                    result[node_id][key] = [
                        {**i, "abs_path": str(folders.directory(i.get("type", "output")) / i.get("subfolder", "")
                                              / i["filename"])} for i in items]
        return result
