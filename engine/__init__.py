"""The comfyd engine: validation, queue, worker, executor and history behind one facade.

The server (and embedded clients) talk to `Engine` only. Importing this package does not import torch.
"""
from __future__ import annotations

import gc
import logging
import sys
import threading
import uuid
from typing import Callable

from . import devices
from .cache import OutputCache
from .events import EventSink, NullSink, timestamp_ms
from .executor import Executor
from .folders import Folders
from .history import History
from .queue import PromptQueue, QueueFull
from .settings import Settings
from .store import Store, StoreError
from .types import ExecutionResult, HistoryRecord, QueueItem
from .validation import ValidationResult, validate_prompt
from .worker import Worker

__all__ = ["Engine", "Settings", "QueueFull", "QueueItem", "HistoryRecord", "ValidationResult", "StoreError"]

# The ComfyUI release whose API comfyd reproduces (reported by /system_stats as `comfyui_version`).
COMFYUI_API_VERSION = "0.3.64"
VERSION = "0.1.0"

log = logging.getLogger("comfyd.engine")


class Engine:
    def __init__(self, settings: Settings, registry, sink: EventSink | None = None, argv: list[str] | None = None):
        self.settings = settings
        self.registry = registry
        self.sink = sink or NullSink()
        self.argv = list(argv if argv is not None else sys.argv)
        # the folder table custom nodes saw (and may have edited) while they loaded, else a new one
        self.folders = getattr(registry, "folders", None) or Folders.from_settings(settings)
        self.folders.create_dirs()
        self.folders.activate()
        # Queue and history go to a database unless asked to live in memory only.
        self.store = None if settings.in_memory_queue else Store(settings.database_path())
        self.history = History(settings.history_size, self.store)
        self.queue = PromptQueue(on_change=self.sink.queue_changed, max_size=settings.max_queue_size,
                                 on_removed=self._dropped, store=self.store)
        self.executor = Executor(registry, self.sink, preview_method=settings.preview_method,
                                 models=self.model_manager,
                                 cache=OutputCache(settings.cache_policy, settings.cache_lru_size))
        self._interrupt = threading.Event()
        self._watch_lock = threading.Lock()
        self._watchers: dict[str, list[Callable[[HistoryRecord], None]]] = {}
        self.worker = Worker(self.queue, self.executor, self.history, self.sink, self._interrupt, self._apply_flags,
                             self._finished)
        self._device = None
        self._models = None
        if self.store is not None:
            self._recover()

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        if self.store is None:
            self.queue.clear()
        else:
            self.queue.close()  # stored pending prompts stay pending: they run after a restart
        self.worker.stop()
        if self.store is not None and not self.worker.alive:
            self.store.close()

    def _recover(self) -> None:
        """Prompts a previous process left unfinished: pending ones are queued again; one that was running when
        it ended, and pending ones whose secrets were not stored, are recorded as failed, never dropped."""
        pending, running, next_arrival = self.store.unfinished()
        if self.settings.requeue_interrupted:
            pending, running = running + pending, []  # the interrupted ones first, as they were queued first
        for item, _ in running:
            self._fail(item, "comfyd stopped while this prompt was running (the process ended or was killed), "
                             "so it did not finish. Queue it again to run it (or start comfyd with "
                             "--requeue-interrupted).")
        runnable = []
        for item, withheld in pending:
            if withheld:
                self._fail(item, f"comfyd restarted before this prompt ran and did not keep its "
                                 f"{', '.join(withheld)} (secrets are never written to disk). Queue it again.")
            else:
                runnable.append(item)
        self.queue.restore(runnable, next_arrival)
        if running or pending:
            log.info("restored the queue: %d pending prompt(s) to run, %d interrupted by the restart recorded as "
                     "failed", len(runnable), len(pending) - len(runnable) + len(running))

    def _fail(self, item: QueueItem, message: str) -> None:
        error = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
                 "exception_message": message, "exception_type": "comfyd.PromptLost", "traceback": [],
                 "current_inputs": {}, "current_outputs": [], "timestamp": timestamp_ms()}
        self.history.record(item, ExecutionResult("error", False, [("execution_error", error)], {}, {}))

    @property
    def device(self):
        if self._device is None:
            self._device = devices.select_device(self.settings.cpu)
        return self._device

    def model_manager(self):
        """The ModelManager, created on first use (it imports torch and picks the device)."""
        if self._models is None:
            from .models.manager import ModelManager

            self._models = ModelManager(self.device, self.settings.vram_mode)
        return self._models

    # -- prompts -------------------------------------------------------------------------------------------

    def validate(self, prompt, partial_targets=None) -> ValidationResult:
        return validate_prompt(prompt, self.registry, partial_targets)

    def submit(self, prompt: dict, outputs: list[str], *, prompt_id: str | None = None, number: float | None = None,
               front: bool = False, extra_data: dict | None = None) -> QueueItem:
        """Queue a validated prompt. ComfyUI's priority: a given `number`, else the counter (negated for front)."""
        counter = self.queue.next_number()
        if number is None:
            number = -counter if front else counter
        item = QueueItem(number, prompt_id or str(uuid.uuid4()), prompt, extra_data or {}, list(outputs))
        self.queue.put(item)
        return item

    def queue_remaining(self) -> int:
        return self.queue.remaining()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is `prompt_id`, when given)."""
        if prompt_id is not None and not self.queue.is_running(prompt_id):
            return False
        self._interrupt.set()
        return True

    def cancel(self, prompt_id: str) -> bool:
        """Cancel a prompt wherever it is: dequeue it if pending, interrupt it if running. False: neither."""
        # Dequeue first: a prompt that starts in between is then still caught by the interrupt.
        return self.queue.delete(prompt_id) or self.interrupt(prompt_id)

    # -- completion ----------------------------------------------------------------------------------------

    def watch(self, prompt_id: str, callback: Callable[[HistoryRecord], None]) -> Callable[[], None]:
        """Call `callback(record)` once when `prompt_id` leaves the queue for good (finished, failed, interrupted
        or deleted), at once if it already has. It runs on the thread that ends the prompt: it must not block.
        Returns a function that cancels the watch."""
        with self._watch_lock:
            record = self.history.find(prompt_id)
            if record is None:
                self._watchers.setdefault(prompt_id, []).append(callback)
        if record is not None:
            callback(record)

        def unwatch() -> None:
            with self._watch_lock:
                callbacks = self._watchers.get(prompt_id, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._watchers.pop(prompt_id, None)

        return unwatch

    def _finished(self, record: HistoryRecord) -> None:
        with self._watch_lock:
            callbacks = self._watchers.pop(record.item.prompt_id, [])
        for callback in callbacks:
            try:
                callback(record)
            except Exception:  # one faulty watcher must not stop the worker or the others
                log.exception("a completion watcher of prompt %s failed", record.item.prompt_id)

    def _dropped(self, items: list[QueueItem]) -> None:
        """Pending prompts deleted from the queue end as interrupted before their first node, kept out of /history."""
        for item in items:
            interrupted = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
                           "timestamp": timestamp_ms()}
            result = ExecutionResult("error", False, [("execution_interrupted", interrupted)], {}, {})
            self._finished(self.history.record(item, result, listed=False))

    def free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        """Ask the worker to drop models/caches between prompts."""
        if unload_models:
            self.queue.set_flag("unload_models", True)
        if free_memory:
            self.queue.set_flag("free_memory", True)

    def _apply_flags(self, flags: dict) -> None:
        if flags.get("unload_models") or flags.get("free_memory"):
            self.unload_models()

    def unload_models(self) -> None:
        """Drop cached outputs and loaded models (call between prompts: the worker does, for /free)."""
        self.executor.reset()
        if self._models is not None:
            self._models.unload_all()
        gc.collect()

    # -- information ---------------------------------------------------------------------------------------

    def system_stats(self) -> dict:
        system = devices.system_info(self.argv)
        system.update({"comfyui_version": COMFYUI_API_VERSION, "comfyd_version": VERSION})
        return {"system": system, "devices": [devices.device_stats(self.device)]}
