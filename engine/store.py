"""The durable record of prompts: a SQLite database (WAL) holding every queued prompt until it finishes, and its
history entry after, so pending prompts survive a restart (or a kill -9) and run then, history stays complete and
prompt numbers keep increasing.

One connection, written under one lock. Secrets in `extra_data` (API keys, auth tokens) are never written: a
prompt that had them and is still pending after a restart cannot run as submitted and is failed with a message.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from .types import SECRET_KEYS, QueueItem

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
    prompt_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,                -- arrival order
    number REAL NOT NULL,                -- ComfyUI's priority (lower runs first)
    item TEXT NOT NULL,                  -- JSON [number, prompt_id, prompt, extra_data, outputs_to_execute]
    created_ns INTEGER NOT NULL,
    user TEXT NOT NULL DEFAULT 'default',
    withheld TEXT NOT NULL DEFAULT '[]', -- names of the secrets left out of extra_data
    state TEXT NOT NULL,                 -- pending | running | finished
    entry TEXT,                          -- the history entry, once finished
    listed INTEGER NOT NULL DEFAULT 1,   -- 0: deleted from the queue before it ran (not in /history)
    finished_seq INTEGER                 -- history order
);
CREATE INDEX IF NOT EXISTS prompts_by_state ON prompts (state, finished_seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class StoreError(RuntimeError):
    """The database cannot be used (corrupt, locked, read-only, another program's file)."""


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as ex:
            raise StoreError(f"cannot use the queue and history database {self.path}: {ex}") from ex

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer comfyd (schema {version}; this one knows "
                             f"{SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            with self._db:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db.execute("SELECT count(*) FROM prompts").fetchone()  # a damaged file fails here, at start

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple = ()) -> None:
        with self._lock, self._db:
            self._db.execute(sql, args)

    # -- counters ------------------------------------------------------------------------------------------

    def counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    # -- the queue -----------------------------------------------------------------------------------------

    def add_pending(self, item: QueueItem, seq: int, next_number: int) -> None:
        withheld = sorted(set(item.extra_data) & SECRET_KEYS)
        row = item.as_list()
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO prompts (prompt_id, seq, number, item, created_ns, withheld, state) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                (item.prompt_id, seq, float(item.number), json.dumps(row), item.created_ns, json.dumps(withheld)))
            self._db.execute("INSERT INTO counters VALUES ('number', ?) ON CONFLICT(name) DO UPDATE SET "
                             "value = max(value, excluded.value)", (next_number,))

    def mark_running(self, prompt_id: str) -> None:
        self._write("UPDATE prompts SET state = 'running' WHERE prompt_id = ?", (prompt_id,))

    def unfinished(self) -> tuple[list[tuple[QueueItem, list[str]]], list[tuple[QueueItem, list[str]]], int]:
        """(pending, running) prompts in arrival order, each with the secrets it lost, and the next arrival seq."""
        rows = self._db.execute("SELECT item, created_ns, withheld, state FROM prompts "
                                "WHERE state != 'finished' ORDER BY seq").fetchall()
        pending, running = [], []
        for raw, created_ns, withheld, state in rows:
            number, prompt_id, prompt, extra, outputs = json.loads(raw)
            item = QueueItem(number, prompt_id, prompt, extra, outputs, created_ns)
            (running if state == "running" else pending).append((item, json.loads(withheld)))
        seq = self._db.execute("SELECT coalesce(max(seq), -1) + 1 FROM prompts").fetchone()[0]
        return pending, running, seq

    # -- history -------------------------------------------------------------------------------------------

    def finish(self, item: QueueItem, entry: dict, listed: bool) -> None:
        """Record `item` as finished with its history entry (adding it when it never was queued here)."""
        stored_entry = dict(entry, prompt=item.as_list())
        row = json.dumps(stored_entry["prompt"])
        with self._lock, self._db:
            finished_seq = self._db.execute("SELECT coalesce(max(finished_seq), 0) + 1 FROM prompts").fetchone()[0]
            seq = self._db.execute("SELECT coalesce(max(seq), -1) + 1 FROM prompts").fetchone()[0]
            self._db.execute(
                "INSERT INTO prompts (prompt_id, seq, number, item, created_ns, state, entry, listed, finished_seq) "
                "VALUES (?, ?, ?, ?, ?, 'finished', ?, ?, ?) ON CONFLICT(prompt_id) DO UPDATE SET "
                "state = 'finished', entry = excluded.entry, listed = excluded.listed, "
                "finished_seq = excluded.finished_seq",
                (item.prompt_id, seq, float(item.number), row, item.created_ns, json.dumps(stored_entry, default=str),
                 int(listed), finished_seq))

    def finished(self, limit: int) -> list[tuple[QueueItem, dict, bool]]:
        """The `limit` most recently finished prompts, oldest first: (item, history entry, listed)."""
        rows = self._db.execute("SELECT item, created_ns, entry, listed FROM prompts WHERE state = 'finished' "
                                "ORDER BY finished_seq DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for raw, created_ns, entry, listed in reversed(rows):
            number, prompt_id, prompt, extra, outputs = json.loads(raw)
            out.append((QueueItem(number, prompt_id, prompt, extra, outputs, created_ns), json.loads(entry),
                        bool(listed)))
        return out

    def forget(self, prompt_ids: list[str]) -> None:
        """Drop finished prompts (history deletion and trimming; files on disk stay)."""
        with self._lock, self._db:
            self._db.executemany("DELETE FROM prompts WHERE prompt_id = ? AND state = 'finished'",
                                 [(p,) for p in prompt_ids])

    def forget_all_finished(self) -> None:
        self._write("DELETE FROM prompts WHERE state = 'finished'")
