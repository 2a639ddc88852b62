"""Finished prompts, oldest first, bounded. Deleting history never touches files on disk."""
from __future__ import annotations

import threading
from collections import OrderedDict

from .types import ExecutionResult, QueueItem


class History:
    def __init__(self, max_size: int = 10000):
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, dict] = OrderedDict()
        self._max_size = max_size

    def record(self, item: QueueItem, result: ExecutionResult) -> None:
        entry = {
            "prompt": item.as_list(),
            "outputs": result.outputs,
            "status": {
                "status_str": result.status_str,
                "completed": result.completed,
                "messages": [list(message) for message in result.messages],
            },
            "meta": result.meta,
        }
        with self._lock:
            self._entries.pop(item.prompt_id, None)
            self._entries[item.prompt_id] = entry
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)

    def get(self, prompt_id: str) -> dict:
        with self._lock:
            entry = self._entries.get(prompt_id)
            return {prompt_id: entry} if entry is not None else {}

    def page(self, max_items: int | None = None, offset: int | None = None) -> dict:
        """ComfyUI's paging: without offset, the `max_items` most recent; with offset, from that index on."""
        with self._lock:
            items = list(self._entries.items())
        if offset is None or offset < 0:
            start = len(items) - max_items if max_items is not None else 0
        else:
            start = offset
        start = max(start, 0)
        end = start + max_items if max_items is not None else len(items)
        return dict(items[start:end])

    def delete(self, prompt_id: str) -> None:
        with self._lock:
            self._entries.pop(prompt_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
