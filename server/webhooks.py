"""The optional webhook: `extra_data.webhook_url` receives a POST with the prompt's result when it ends.

Delivery runs on the event loop; the engine's worker only schedules it, so a slow or dead receiver never holds
up the queue."""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from engine import Engine, HistoryRecord

from .errors import bad_request

log = logging.getLogger("comfyd.webhooks")

MAX_URL_LENGTH = 2048
# Statuses worth another try: the receiver is down, overloaded or timed out. Any other 4xx is final.
RETRYABLE = {408, 425, 429}


def webhook_url(extra_data: dict) -> str | None:
    """The prompt's webhook URL (None without one); a 400 unless it is an absolute http(s) URL."""
    raw = extra_data.get("webhook_url")
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw or len(raw) > MAX_URL_LENGTH:
        raise _invalid(f"it must be an http(s) URL of at most {MAX_URL_LENGTH} characters.")
    try:
        url = URL(raw)
    except ValueError as ex:
        raise _invalid(f"it is not a valid URL ({ex}).") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise _invalid("it must be an absolute http:// or https:// URL.")
    return raw


def _invalid(why: str) -> web.HTTPException:
    return bad_request(f"extra_data.webhook_url is not usable: {why}", type_="invalid_prompt")


def payload(record: HistoryRecord) -> dict:
    status = record.entry["status"]
    return {"prompt_id": record.item.prompt_id,
            "status": {"status_str": status["status_str"], "completed": status["completed"],
                       "messages": status["messages"]},
            "outputs": record.entry["outputs"]}


class Webhooks:
    """POSTs each watched prompt's result to its URL, retrying failures with exponential backoff."""

    def __init__(self, engine: Engine, tries: int = 3, backoff: float = 1.0, timeout: float = 10.0):
        self._engine = engine
        self._tries = tries
        self.backoff = backoff  # seconds before the second try, doubling after
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        yield
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    def watch(self, prompt_id: str, url: str) -> None:
        """Deliver to `url` when `prompt_id` ends (finished, failed, interrupted or deleted from the queue)."""
        self._engine.watch(prompt_id, lambda record: self._ended(url, record))

    def _ended(self, url: str, record: HistoryRecord) -> None:
        """Any thread (usually the worker's): hop onto the loop and return at once."""
        try:
            self._loop.call_soon_threadsafe(self._start, url, payload(record))
        except RuntimeError:  # the loop closed while shutting down: nothing can be delivered any more
            pass

    def _start(self, url: str, body: dict) -> None:
        task = self._loop.create_task(self._deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: dict) -> None:
        for attempt in range(self._tries):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                async with self._session.post(url, json=body) as response:
                    if response.status < 400:
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status not in RETRYABLE:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError) as ex:
                problem = f"{type(ex).__name__}: {ex}"
            log.info("webhook for prompt %s, try %d of %d: %s", body["prompt_id"], attempt + 1, self._tries, problem)
        log.warning("webhook for prompt %s to %s was not delivered: %s", body["prompt_id"], url, problem)
