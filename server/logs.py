"""The server's recent log lines for the frontend's terminal panel (/internal/logs) and their live feed: websocket
`logs` messages to the clients that subscribed through PATCH /internal/logs/subscribe."""
from __future__ import annotations

import logging
import shutil
from collections import deque
from datetime import datetime

# As many entries as ComfyUI keeps.
CAPACITY = 300


class LogBuffer(logging.Handler):
    """A root-logger handler keeping the last `capacity` records as ComfyUI's `{t, m}` entries. Records arrive on
    any thread; `logging.Handler.handle` holds `self.lock` around `emit`, and every other access takes it too."""

    def __init__(self, hub, capacity: int = CAPACITY):
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.hub = hub
        self.entries: deque[dict] = deque(maxlen=capacity)
        self.subscribers: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {"t": datetime.fromtimestamp(record.created).isoformat(), "m": self.format(record) + "\n"}
        except Exception:
            self.handleError(record)
            return
        self.entries.append(entry)
        for sid in list(self.subscribers):
            if self.hub.connected(sid):
                self.hub.send("logs", {"entries": [entry], "size": None}, sid)
            else:  # the client went away: no need to keep its subscription
                self.subscribers.discard(sid)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.entries)

    def text(self) -> str:
        """GET /internal/logs: every entry as one string, `<time> - <line>`."""
        return "".join(f"{e['t']} - {e['m']}" for e in self.snapshot())

    def subscribe(self, sid: str, enabled: bool) -> None:
        with self.lock:
            if enabled:
                self.subscribers.add(sid)
            else:
                self.subscribers.discard(sid)

    @staticmethod
    def terminal_size() -> dict:
        size = shutil.get_terminal_size((80, 24))
        return {"cols": size.columns, "rows": size.lines}

    def capture(self) -> None:
        """Start taking the root logger's records; the app does this before custom nodes load, so their import
        messages and failures reach the terminal panel too."""
        logging.getLogger().addHandler(self)

    async def lifetime(self, app):
        """cleanup_ctx: stop capturing when the app shuts down."""
        try:
            yield
        finally:
            logging.getLogger().removeHandler(self)
