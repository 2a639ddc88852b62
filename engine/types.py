"""Dataclasses that cross module boundaries in the engine."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class QueueItem:
    number: float | int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]

    def as_list(self) -> list:
        """ComfyUI's wire shape for queue and history entries: a 5-element array."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]

    @property
    def client_id(self) -> str | None:
        cid = self.extra_data.get("client_id")
        return cid if isinstance(cid, str) else None


@dataclasses.dataclass
class ExecutionResult:
    """What one prompt run produced: history material."""
    status_str: str  # "success" | "error"
    completed: bool
    messages: list[tuple[str, dict]]
    outputs: dict[str, dict]  # node id -> merged UI output
    meta: dict[str, dict]
