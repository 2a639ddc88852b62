"""Awaiting the end of a prompt from the event loop: the engine's worker-thread notification, hopped onto the loop."""
from __future__ import annotations

import asyncio

from engine import Engine, HistoryRecord


class Completion:
    """The end of one prompt as an awaitable. Create it before queueing the prompt, so the end cannot be missed."""

    def __init__(self, engine: Engine, prompt_id: str):
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[HistoryRecord] = self._loop.create_future()
        self._unwatch = engine.watch(prompt_id, self._notify)

    def _notify(self, record: HistoryRecord) -> None:
        """Any thread: the engine's worker, or the caller of a queue deletion."""
        try:
            self._loop.call_soon_threadsafe(self._resolve, record)
        except RuntimeError:  # the loop closed while shutting down: nobody is waiting any more
            pass

    def _resolve(self, record: HistoryRecord) -> None:
        if not self._future.done():
            self._future.set_result(record)

    async def wait(self) -> HistoryRecord:
        try:
            return await self._future
        finally:
            self._unwatch()

    def cancel(self) -> None:
        """Stop watching (the prompt was never queued)."""
        self._unwatch()
        self._future.cancel()
