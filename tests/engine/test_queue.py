"""PromptQueue: the start hook runs before a prompt is visible as running (no lost interrupts)."""
from __future__ import annotations

import threading

from engine.queue import PromptQueue
from engine.types import QueueItem


def test_on_start_runs_before_the_prompt_is_seen_running():
    queue = PromptQueue()
    queue.put(QueueItem(1, "p1", {}, {}, []))
    interrupt = threading.Event()
    interrupt.set()  # a stale interrupt from before this prompt
    seen = []

    def on_start():
        seen.append(queue.is_running("p1"))  # nobody can see p1 running yet
        interrupt.clear()

    item = queue.get(timeout=1, on_start=on_start)
    assert item.prompt_id == "p1" and seen == [False]
    assert queue.is_running("p1") and not interrupt.is_set()
