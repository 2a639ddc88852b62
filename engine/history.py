"""Finished prompts, oldest first, bounded. Deleting history never touches files on disk."""
from __future__ import annotations

import threading
from collections import OrderedDict

from .store import Store
from .types import ExecutionResult, HistoryRecord, QueueItem


class History:
    """The most recent `max_size` finished prompts in memory; with a store, written through to it (and read back
    from it at start), so history outlives the process."""

    def __init__(self, max_size: int = 10000, store: Store | None = None):
        self._lock = threading.Lock()
        self._records: OrderedDict[str, HistoryRecord] = OrderedDict()
        self._max_size = max_size
        self._store = store
        for item, entry, listed in store.finished(max_size) if store is not None else ():
            self._records[item.prompt_id] = HistoryRecord(item, entry, listed)

    def record(self, item: QueueItem, result: ExecutionResult, *, listed: bool = True) -> HistoryRecord:
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
        record = HistoryRecord(item, entry, listed)
        trimmed = []
        with self._lock:
            if self._store is not None:
                self._store.finish(item, entry, listed)
            self._records.pop(item.prompt_id, None)
            self._records[item.prompt_id] = record
            while len(self._records) > self._max_size:
                trimmed.append(self._records.popitem(last=False)[0])
            if trimmed and self._store is not None:
                self._store.forget(trimmed)
        return record

    def find(self, prompt_id: str) -> HistoryRecord | None:
        """The record of `prompt_id`, listed or not."""
        with self._lock:
            return self._records.get(prompt_id)

    def records(self) -> list[HistoryRecord]:
        """Every record, listed or not, oldest first."""
        with self._lock:
            return list(self._records.values())

    def get(self, prompt_id: str) -> dict:
        record = self.find(prompt_id)
        return {prompt_id: record.entry} if record is not None and record.listed else {}

    def page(self, max_items: int | None = None, offset: int | None = None) -> dict:
        """ComfyUI's paging: without offset, the `max_items` most recent; with offset, from that index on."""
        items = [(r.item.prompt_id, r.entry) for r in self.records() if r.listed]
        if offset is None or offset < 0:
            start = len(items) - max_items if max_items is not None else 0
        else:
            start = offset
        start = max(start, 0)
        end = start + max_items if max_items is not None else len(items)
        return dict(items[start:end])

    def delete(self, prompt_id: str) -> None:
        with self._lock:
            self._records.pop(prompt_id, None)
            if self._store is not None:
                self._store.forget([prompt_id])

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            if self._store is not None:
                self._store.forget_all_finished()

    def __len__(self) -> int:
        with self._lock:
            return sum(record.listed for record in self._records.values())
