"""The prompt queue: a heap ordered by (number, arrival) feeding one worker."""
from __future__ import annotations

import heapq
import itertools
import threading
from typing import Callable

from .store import Store
from .types import QueueItem


class QueueFull(Exception):
    pass


class PromptQueue:
    def __init__(self, on_change: Callable[[], None] = lambda: None, max_size: int = 0,
                 on_removed: Callable[[list[QueueItem]], None] = lambda items: None, store: Store | None = None):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, QueueItem]] = []
        self._arrival = itertools.count()
        self._running: dict[str, QueueItem] = {}
        self._on_change = on_change
        self._on_removed = on_removed  # pending prompts deleted or cleared: they will never run
        self._max_size = max_size
        self._next_number = store.counter("number") if store is not None else 0
        self._flags: dict[str, object] = {}
        self._store = store  # pending prompts are written there before anyone can see them queued
        self._closed = False

    def next_number(self) -> int:
        """The server-side counter behind each prompt's `number` (ComfyUI's default priority)."""
        with self._cond:
            self._next_number += 1
            return self._next_number - 1

    def restore(self, items: list[QueueItem], next_arrival: int) -> None:
        """Queue again the prompts a previous process left pending (already stored, in arrival order)."""
        with self._cond:
            self._arrival = itertools.count(next_arrival)
            for arrival, item in enumerate(items):
                heapq.heappush(self._heap, (float(item.number), arrival, item))
            self._cond.notify()
        self._on_change()

    def is_full(self) -> bool:
        with self._cond:
            return self._full()

    def _full(self) -> bool:
        return bool(self._max_size) and len(self._heap) + len(self._running) >= self._max_size

    def put(self, item: QueueItem) -> None:
        with self._cond:
            if self._full():
                raise QueueFull(f"the queue is full ({self._max_size} prompts)")
            arrival = next(self._arrival)
            if self._store is not None:
                self._store.add_pending(item, arrival, self._next_number)
            heapq.heappush(self._heap, (float(item.number), arrival, item))
            self._cond.notify()
        self._on_change()

    def get(self, timeout: float | None = None, on_start: Callable[[], None] = lambda: None) -> QueueItem | None:
        """The next prompt, now marked running; None when `timeout` passes with an empty queue. `on_start` runs
        just before the prompt is seen as running (the worker clears a stale interrupt there, so an interrupt
        sent by anyone who saw it running is never lost)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._heap or self._closed, timeout=timeout) or self._closed:
                return None
            _, _, item = heapq.heappop(self._heap)
            if self._store is not None:
                self._store.mark_running(item.prompt_id)
            on_start()
            self._running[item.prompt_id] = item
        self._on_change()
        return item

    def task_done(self, item: QueueItem) -> None:
        with self._cond:
            self._running.pop(item.prompt_id, None)
        self._on_change()

    def snapshot(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """(running, pending), pending in execution order."""
        with self._cond:
            return list(self._running.values()), [entry[2] for entry in sorted(self._heap)]

    def is_running(self, prompt_id: str) -> bool:
        with self._cond:
            return prompt_id in self._running

    def remaining(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._running)

    def delete(self, prompt_id: str) -> bool:
        with self._cond:
            kept = [entry for entry in self._heap if entry[2].prompt_id != prompt_id]
            removed = [entry[2] for entry in self._heap if entry[2].prompt_id == prompt_id]
            if not removed:
                return False
            heapq.heapify(kept)
            self._heap = kept
        self._on_removed(removed)
        self._on_change()
        return True

    def clear(self) -> None:
        with self._cond:
            removed = [entry[2] for entry in sorted(self._heap)]
            self._heap = []
        if removed:
            self._on_removed(removed)
        self._on_change()

    def close(self) -> None:
        """Hand out no more prompts (shutting down): the pending ones stay queued, and stored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def set_flag(self, name: str, value: object) -> None:
        with self._cond:
            self._flags[name] = value
            self._cond.notify()

    def take_flags(self) -> dict[str, object]:
        with self._cond:
            flags, self._flags = self._flags, {}
            return flags
