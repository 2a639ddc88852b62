#!/usr/bin/env python3
"""Refresh tests/data/upstream from the captures of upstream ComfyUI (0.3.64 on the CPU) beside the checkout.

The suite reads only what this writes into the repository: every capture but the full /object_info, minified, and
the /object_info entries of the node types comfyd registers (one line each, sorted), the declarations the node
tests compare against. Run it again after adding node types, so that their upstream declarations come along.

    python tools/upstream_data.py [--captures ../shared/reference/captures]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nodes.registry import NodeRegistry  # noqa: E402  (after the path fix: a script)

OUT = ROOT / "tests" / "data" / "upstream"
OBJECT_INFO = "GET_object_info_full.json"


def write_captures(source: Path) -> int:
    folder = OUT / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    count = 0
    for capture in sorted(source.glob("*.json")):
        if capture.name != OBJECT_INFO:
            data = json.loads(capture.read_text(encoding="utf-8"))
            (folder / capture.name).write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
            count += 1
    return count


def write_object_info(source: Path) -> int:
    upstream = json.loads((source / OBJECT_INFO).read_text(encoding="utf-8"))["body_json"]
    registry = NodeRegistry()
    registry.load_builtins()
    names = sorted(set(registry.classes) & set(upstream))
    lines = [f"{json.dumps(name)}:{json.dumps(upstream[name], separators=(',', ':'))}" for name in names]
    (OUT / "object_info.json").write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=Path, default=ROOT.parent / "shared" / "reference" / "captures")
    source = parser.parse_args(argv).captures
    print(f"{write_captures(source)} captures, {write_object_info(source)} node declarations -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
