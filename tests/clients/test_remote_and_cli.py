"""The remote client against a live app, and `comfyd run` in process and against a server."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from comfyd.cli import apply_assignments, parse_assignment
from comfyd.client import PromptExecutionError, PromptValidationError, RemoteComfyClient, RemoteComfyClientSync

ROOT = Path(__file__).resolve().parents[2]
IMAGE_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 4, "batch_size": 1, "color": 0x00FF00}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "remote"}},
}


def base_url(client) -> str:
    return str(client.make_url("")).rstrip("/")


async def test_remote_client_v1_ws_upload_view_history(client):
    seen = []
    async with RemoteComfyClient(base_url(client)) as remote:
        png = await remote.queue_prompt(IMAGE_PROMPT)
        assert Image.open(io.BytesIO(png)).getpixel((0, 0)) == (0, 255, 0)
        assert (await remote.queue_prompt_api(IMAGE_PROMPT))["outputs"]["2"]["images"]

        slow = {"1": {"class_type": "TestConstant", "inputs": {"value": 3}},
                "2": {"class_type": "TestSlow", "inputs": {"value": ["1", 0], "steps": 2, "delay": 0}},
                "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}}}
        outputs = await remote.queue_prompt_ws(slow, on_event=lambda kind, data: seen.append(kind))
        assert outputs == {"3": {"values": [3]}} and seen.count("progress") == 2

        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, format="PNG")
        uploaded = await remote.upload_image(buffer.getvalue(), "up.png")
        assert uploaded == {"name": "up.png", "subfolder": "", "type": "input"}
        assert Image.open(io.BytesIO(await remote.view("up.png", kind="input"))).getpixel((0, 0)) == (1, 2, 3)
        assert len(await remote.get_history(max_items=1)) == 1

        with pytest.raises(PromptValidationError) as invalid:
            await remote.queue_prompt_ws({"1": {"class_type": "TestOutput", "inputs": {}}})
        assert invalid.value.status == 400 and "node_errors" in invalid.value.body
        failing = {"1": {"class_type": "TestFail", "inputs": {"value": 1, "message": "bad"}},
                   "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}
        with pytest.raises(PromptExecutionError):
            await remote.queue_prompt(failing)
        with pytest.raises(PromptExecutionError, match="bad"):
            await remote.queue_prompt_ws(failing)


def test_assignments_parse_json_or_text():
    assert parse_assignment('6.text="a cat"') == ("6", "text", "a cat")
    assert parse_assignment("3.seed=42") == ("3", "seed", 42)
    assert parse_assignment("6.text=plain words") == ("6", "text", "plain words")
    prompt = apply_assignments({"3": {"class_type": "X", "inputs": {"seed": 1}}}, [("3", "seed", 5)])
    assert prompt["3"]["inputs"]["seed"] == 5


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "comfyd", "run", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_cli_runs_a_workflow_in_process(tmp_path):
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"prompt": IMAGE_PROMPT}))
    result = run_cli(str(workflow), "--set", "1.color=255", "--output-dir", str(tmp_path / "out"),
                     "--base-directory", str(tmp_path / "base"), "--cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out" / "remote_00001_.png"
    assert result.stdout.split() == [str(out)]
    assert Image.open(out).getpixel((0, 0)) == (0, 0, 255)

    bad = run_cli(str(workflow), "--set", "9.x=1", "--base-directory", str(tmp_path / "base"), cwd=tmp_path)
    assert bad.returncode != 0 and "no node '9'" in bad.stderr


async def test_cli_runs_against_a_server(client, tmp_path):
    import asyncio

    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps(IMAGE_PROMPT))
    result = await asyncio.to_thread(run_cli, str(workflow), "--url", base_url(client), "--output-dir",
                                     str(tmp_path / "got"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "got" / "remote_00001_.png").getpixel((0, 0)) == (0, 255, 0)


async def test_sync_client_wraps_the_async_calls(client):
    import asyncio

    sync = RemoteComfyClientSync(base_url(client))
    png = await asyncio.to_thread(sync.queue_prompt, IMAGE_PROMPT)  # blocking: off this test's event loop
    assert Image.open(io.BytesIO(png)).size == (8, 4)
    with pytest.raises(AttributeError):
        sync.no_such_call


def test_cli_generates_an_image_from_a_fixture_checkpoint(tmp_path):
    from tests.e2e.test_txt2img import default_workflow
    from tests.fixtures.checkpoints import write_sd15

    base = tmp_path / "base"
    (base / "models" / "checkpoints").mkdir(parents=True)
    write_sd15(base / "models" / "checkpoints" / "tiny.safetensors")
    workflow = tmp_path / "txt2img.json"
    workflow.write_text(json.dumps(default_workflow("tiny.safetensors", steps=2, prefix="cli")))
    outputs = []
    for seed in (7, 7, 8):
        out = tmp_path / f"out{len(outputs)}"
        result = run_cli(str(workflow), "--set", f"3.seed={seed}", "--set", '6.text="a red house"',
                         "--output-dir", str(out), "--base-directory", str(base), "--cpu", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "node 3 [" in result.stderr  # the progress bar
        image = Image.open(result.stdout.split()[0])
        assert image.size == (64, 64)
        outputs.append(image.tobytes())
    assert outputs[0] == outputs[1] != outputs[2]  # same seed, same image; another seed, another image
