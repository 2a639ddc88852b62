"""What upstream ComfyUI 0.3.64 answered, kept in tests/data/upstream (tools/upstream_data.py refreshes it)."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "upstream"
CAPTURES = DATA / "captures"


def capture(name: str) -> dict:
    """The capture `name` (file stem): the request, status, headers and body upstream gave."""
    return json.loads((CAPTURES / f"{name}.json").read_text(encoding="utf-8"))


@cache
def _object_info() -> dict:
    return json.loads((DATA / "object_info.json").read_text(encoding="utf-8"))


def declaration(name: str) -> dict:
    """Upstream's /object_info entry for node type `name` (a fresh copy)."""
    info = _object_info()
    if name not in info:
        raise KeyError(f"no upstream declaration of {name} in {DATA}: run tools/upstream_data.py after adding it")
    return json.loads(json.dumps(info[name]))


def declarations() -> list[str]:
    """The node types whose upstream declarations are kept (those comfyd registers)."""
    return sorted(_object_info())
