"""The single worker thread: takes prompts off the queue, runs them, records history."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Callable

from .events import EventSink, exception_type_name, timestamp_ms
from .executor import Executor
from .history import History
from .queue import PromptQueue
from .types import ExecutionResult, HistoryRecord, QueueItem

log = logging.getLogger("comfyd.worker")


class Worker:
    def __init__(self, queue: PromptQueue, executor: Executor, history: History, sink: EventSink,
                 interrupt: threading.Event, on_flags: Callable[[dict], None],
                 on_finished: Callable[[HistoryRecord], None] = lambda record: None):
        self.queue = queue
        self.executor = executor
        self.history = history
        self.sink = sink
        self.interrupt = interrupt
        self.on_flags = on_flags
        self.on_finished = on_finished
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="comfyd-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.interrupt.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.2, on_start=self.interrupt.clear)
            flags = self.queue.take_flags()
            if flags:
                self.on_flags(flags)
            if item is not None:
                self.run_one(item)

    def run_one(self, item: QueueItem) -> None:
        started = time.perf_counter()
        try:
            result = self.executor.run(item, self.interrupt)
        except Exception as ex:  # a bug in the engine must fail this prompt only, never the worker
            log.exception("prompt %s failed outside any node", item.prompt_id)
            data = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
                    "exception_message": f"{ex}\n", "exception_type": exception_type_name(type(ex)),
                    "traceback": traceback.format_tb(ex.__traceback__), "current_inputs": {},
                    "current_outputs": [], "timestamp": timestamp_ms()}
            self.sink.send("execution_error", data, item.client_id)
            result = ExecutionResult("error", False, [("execution_error", data)], {}, {})
        log.info("Prompt executed in %.2f seconds", time.perf_counter() - started)
        record = self.history.record(item, result)
        self.queue.task_done(item)
        self.sink.send("executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id)
        # Last, so whoever is told sees the prompt in the history and no longer in the queue.
        self.on_finished(record)
