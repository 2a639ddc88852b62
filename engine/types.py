"""Dataclasses that cross module boundaries in the engine."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from typing import Any


# extra_data keys that carry credentials: they reach the nodes only, never a stored or served copy of the prompt.
SECRET_KEYS = frozenset({"api_key_comfy_org", "auth_token_comfy_org"})


@dataclasses.dataclass(frozen=True)
class QueueItem:
    number: float | int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    # When it was queued, in ns since the epoch (fine enough to order prompts queued in the same millisecond);
    # not part of ComfyUI's 5-element wire shape.
    created_ns: int = dataclasses.field(default_factory=time.time_ns, compare=False)

    def as_list(self) -> list:
        """ComfyUI's wire shape for queue and history entries: a 5-element array (secrets left out)."""
        return [self.number, self.prompt_id, self.prompt, self.public_extra_data, self.outputs_to_execute]

    @property
    def public_extra_data(self) -> dict[str, Any]:
        return {k: v for k, v in self.extra_data.items() if k not in SECRET_KEYS}

    @property
    def client_id(self) -> str | None:
        cid = self.extra_data.get("client_id")
        return cid if isinstance(cid, str) else None

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 (hex) of the prompt graph as compact JSON: equal graphs, equal digests."""
        return hashlib.sha256(json.dumps(self.prompt, separators=(",", ":")).encode()).hexdigest()


@dataclasses.dataclass
class ExecutionResult:
    """What one prompt run produced: history material."""
    status_str: str  # "success" | "error"
    completed: bool
    messages: list[tuple[str, dict]]
    outputs: dict[str, dict]  # node id -> merged UI output
    meta: dict[str, dict]


@dataclasses.dataclass(frozen=True)
class HistoryRecord:
    """A prompt that left the queue for good, with its ComfyUI history entry (prompt, outputs, status, meta)."""
    item: QueueItem
    entry: dict
    # False for a prompt deleted from the queue before it ran: job views show it as cancelled, /history does not
    # (upstream forgets such prompts).
    listed: bool = True
