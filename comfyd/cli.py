"""`comfyd`: serve (the default; ComfyUI's flags), or `comfyd run workflow.json` to run one workflow.

    comfyd --port 8188 --cpu                         # the server
    comfyd run workflow.json --set 6.text="a cat" --output-dir out/        # in process, no server
    comfyd run workflow.json --url http://127.0.0.1:8188                    # against a running server
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        sys.exit(run_main(argv[1:]))
    from server.__main__ import main as serve

    serve(argv[1:] if argv[:1] == ["serve"] else argv)


def parse_assignment(text: str) -> tuple[str, str, object]:
    """`NODE.INPUT=VALUE` -> (node, input, value); VALUE is JSON when it parses, else a string."""
    target, sep, raw = text.partition("=")
    node, dot, name = target.partition(".")
    if not sep or not dot or not node or not name:
        raise argparse.ArgumentTypeError(f"expected NODE.INPUT=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return node, name, value


def apply_assignments(prompt: dict, assignments: list[tuple[str, str, object]]) -> dict:
    for node, name, value in assignments:
        if node not in prompt:
            raise SystemExit(f"--set: the workflow has no node {node!r} (nodes: {', '.join(prompt)})")
        prompt[node].setdefault("inputs", {})[name] = value
    return prompt


class ProgressBar:
    """One line on stderr: the running node and its step progress."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width, self.node = stream, width, None

    def __call__(self, event: str, data) -> None:
        if event == "executing" and isinstance(data, dict):
            self.node = data.get("node")
            if self.node is not None:
                self.stream.write(f"\r\x1b[Knode {self.node}")
        elif event == "progress" and isinstance(data, dict):
            done = int(self.width * data["value"] / max(data["max"], 1))
            self.stream.write(f"\r\x1b[Knode {data['node']} [{'#' * done}{'.' * (self.width - done)}] "
                              f"{data['value']}/{data['max']}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def run_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="comfyd run", description="Run one workflow (API or UI format).")
    p.add_argument("workflow", type=Path)
    p.add_argument("--set", dest="assignments", type=parse_assignment, action="append", default=[],
                   metavar="NODE.INPUT=VALUE", help="override an input (VALUE as JSON, else text); repeatable")
    p.add_argument("--output-dir", type=Path, help="copy the output images here")
    p.add_argument("--url", help="a running comfyd/ComfyUI server; default: run in this process")
    p.add_argument("--base-directory", type=Path, default=Path.cwd(), help="models/input/output root (in process)")
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    try:
        workflow = json.loads(args.workflow.read_text(encoding="utf-8"))
    except (OSError, ValueError) as ex:
        print(f"comfyd run: cannot read {args.workflow}: {ex}", file=sys.stderr)
        return 2
    runner = _run_remote if args.url else _run_embedded
    try:
        images = asyncio.run(runner(workflow, args))
    except Exception as ex:  # report, don't dump a traceback at the user
        print(f"\ncomfyd run: {type(ex).__name__}: {ex}", file=sys.stderr)
        return 1
    for name in images:
        print(name)
    return 0


def _to_api(workflow: dict, object_info: dict, assignments) -> dict:
    """An API-format prompt from a UI-format workflow, an API-format one, or `{"prompt": ...}`."""
    from engine.workflow import is_ui_workflow, to_api_prompt

    if is_ui_workflow(workflow):
        prompt = to_api_prompt(workflow, object_info)
    elif isinstance(workflow.get("prompt"), dict):
        prompt = workflow["prompt"]
    else:
        prompt = workflow
    return apply_assignments(prompt, assignments)


def _images(outputs: dict):
    for ui in outputs.values():
        for item in ui.get("images", []):
            if isinstance(item, dict) and "filename" in item:
                yield item


async def _run_embedded(workflow: dict, args) -> list[str]:
    from . import Comfy

    bar = ProgressBar()
    async with Comfy(args.base_directory, cpu=args.cpu) as client:
        prompt = _to_api(workflow, client.engine.registry.all_info(), args.assignments)
        outputs = {}
        async for event, data in client.queue_with_progress(prompt):
            if event == "outputs":
                outputs = data
            else:
                bar(event, data)
    bar.close()
    written = []
    for item in _images(outputs):
        if args.output_dir:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            written.append(str(shutil.copy2(item["abs_path"], args.output_dir / item["filename"])))
        else:
            written.append(item["abs_path"])
    return written


async def _run_remote(workflow: dict, args) -> list[str]:
    from .client import RemoteComfyClient

    bar = ProgressBar()
    async with RemoteComfyClient(args.url) as client:
        prompt = _to_api(workflow, await client.object_info(), args.assignments)
        outputs = await client.queue_prompt_ws(prompt, on_event=bar)
        bar.close()
        written = []
        for item in _images(outputs):
            if args.output_dir:
                args.output_dir.mkdir(parents=True, exist_ok=True)
                target = args.output_dir / item["filename"]
                target.write_bytes(await client.view(item["filename"], item.get("subfolder", ""),
                                                     item.get("type", "output")))
                written.append(str(target))
            else:
                written.append(f"{args.url.rstrip('/')}/api/view?filename={item['filename']}"
                               f"&subfolder={item.get('subfolder', '')}&type={item.get('type', 'output')}")
        return written
