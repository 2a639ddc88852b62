"""The comfyd engine: validation, queue, worker, executor and history behind one facade.

The server (and embedded clients) talk to `Engine` only. Importing this package does not import torch.
"""
from __future__ import annotations

import gc
import logging
import sys
import threading
import uuid

from . import devices
from .events import EventSink, NullSink
from .executor import Executor
from .folders import Folders
from .history import History
from .queue import PromptQueue, QueueFull
from .settings import Settings
from .types import QueueItem
from .validation import ValidationResult, validate_prompt
from .worker import Worker

__all__ = ["Engine", "Settings", "QueueFull", "QueueItem", "ValidationResult"]

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
        self.folders = Folders.from_settings(settings)
        self.folders.create_dirs()
        self.folders.activate()
        self.history = History(settings.history_size)
        self.queue = PromptQueue(on_change=self.sink.queue_changed, max_size=settings.max_queue_size)
        self.executor = Executor(registry, self.sink, preview_method=settings.preview_method,
                                 models=self.model_manager)
        self._interrupt = threading.Event()
        self.worker = Worker(self.queue, self.executor, self.history, self.sink, self._interrupt, self._apply_flags)
        self._device = None
        self._models = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.queue.clear()
        self.worker.stop()

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

    def free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        """Ask the worker to drop models/caches between prompts."""
        if unload_models:
            self.queue.set_flag("unload_models", True)
        if free_memory:
            self.queue.set_flag("free_memory", True)

    def _apply_flags(self, flags: dict) -> None:
        if flags.get("unload_models") or flags.get("free_memory"):
            self.executor.reset()
            if self._models is not None:
                self._models.unload_all()
            gc.collect()

    # -- information ---------------------------------------------------------------------------------------

    def system_stats(self) -> dict:
        system = devices.system_info(self.argv)
        system.update({"comfyui_version": COMFYUI_API_VERSION, "comfyd_version": VERSION})
        return {"system": system, "devices": [devices.device_stats(self.device)]}
