"""The engine's durable queue and history across engine instances on one base directory (the process restarts of
tests/server/test_durable_queue.py, without the processes)."""
from __future__ import annotations

import dataclasses

import pytest

from engine import Engine, StoreError
from engine.types import ExecutionResult
from tests.server.test_execution import chain


def crashed_engine(settings, registry) -> tuple[str, str]:
    """An engine that took its first prompt to run and then died (never stopped): (running id, pending id)."""
    engine = Engine(settings, registry)
    first = engine.submit(chain(1), ["3"]).prompt_id
    second = engine.submit(chain(2), ["3"]).prompt_id
    assert engine.queue.get(timeout=1).prompt_id == first  # what the worker does as it starts a prompt
    engine.store.close()
    return first, second


def test_a_restart_records_the_interrupted_prompt_failed_and_keeps_the_pending_one(settings, registry):
    first, second = crashed_engine(settings, registry)
    engine = Engine(settings, registry)
    running, pending = engine.queue.snapshot()
    assert running == [] and [item.prompt_id for item in pending] == [second]
    lost = engine.history.find(first).entry["status"]
    assert lost["status_str"] == "error" and "--requeue-interrupted" in lost["messages"][0][1]["exception_message"]
    assert engine.queue.next_number() > pending[0].number
    engine.stop()


def test_requeue_interrupted_runs_it_again_first(settings, registry):
    first, second = crashed_engine(settings, registry)
    engine = Engine(dataclasses.replace(settings, requeue_interrupted=True), registry)
    _, pending = engine.queue.snapshot()
    assert [item.prompt_id for item in pending] == [first, second] and engine.history.find(first) is None
    engine.stop()


def test_history_is_bounded_in_the_database_too(settings, registry):
    settings = dataclasses.replace(settings, history_size=2)
    engine = Engine(settings, registry)
    ids = []
    for value in range(3):
        item = engine.submit(chain(value), ["3"])
        engine.history.record(item, ExecutionResult("success", True, [], {}, {}))
        ids.append(item.prompt_id)
    engine.stop()
    engine = Engine(settings, registry)
    assert list(engine.history.page()) == ids[1:]
    engine.stop()


def test_a_database_of_a_newer_comfyd_is_refused(settings, registry):
    Engine(settings, registry).stop()
    import sqlite3

    with sqlite3.connect(settings.database_path()) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer comfyd"):
        Engine(settings, registry)
