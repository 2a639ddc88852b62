"""The queue and history outlive the process (SQLite under the base directory): a real server killed with
SIGKILL mid-queue comes back with its pending prompts, runs them, keeps history and keeps numbering upward."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.browser.live import ROOT, Comfyd, wait_until

# A node that runs until a file appears, so a test can hold a prompt "running" for as long as it needs.
PACK = '''
import time
from pathlib import Path


class HoldUntil:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"flag": ("STRING", {}), "value": ("INT", {"default": 0})}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, flag, value):
        while flag and not Path(flag).exists():
            time.sleep(0.05)
        return {"ui": {"values": [value]}}


NODE_CLASS_MAPPINGS = {"HoldUntil": HoldUntil}
'''


def prompt(flag: str, value: int) -> dict:
    return {"prompt": {"1": {"class_type": "HoldUntil", "inputs": {"flag": flag, "value": value}}},
            "client_id": "durable", "extra_data": {"api_key_comfy_org": "secret-key"} if value == 99 else {}}


def queue_prompt(server: Comfyd, body: dict) -> str:
    import urllib.request

    request = urllib.request.Request(server.url + "/prompt", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer = json.load(resp)
    return answer["prompt_id"], answer["number"]


def test_a_killed_server_keeps_its_queue_and_history(tmp_path):
    pack = tmp_path / "custom_nodes" / "hold"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)
    gate = tmp_path / "open"
    server = Comfyd(tmp_path)
    try:
        done_id, done_number = queue_prompt(server, prompt("", 1))
        wait_until(lambda: server.get_json(f"/history/{done_id}"))
        running_id, _ = queue_prompt(server, prompt(str(gate), 2))  # holds the worker
        wait_until(lambda: server.get_json("/queue")["queue_running"])
        pending = [queue_prompt(server, prompt("", value))[0] for value in (3, 4, 5)]
        with_secret, _ = queue_prompt(server, prompt("", 99))
        assert len(server.get_json("/queue")["queue_pending"]) == 4
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=20)

        gate.write_text("open")
        server._start()  # same base directory, same port
        for prompt_id in pending + [with_secret, running_id]:
            wait_until(lambda: server.get_json(f"/history/{prompt_id}"))
        history = server.get_json("/history")
        assert history[done_id]["outputs"] == {"1": {"values": [1]}}  # finished before the kill: kept
        for prompt_id, value in zip(pending, (3, 4, 5)):
            assert history[prompt_id]["status"]["status_str"] == "success"
            assert history[prompt_id]["outputs"] == {"1": {"values": [value]}}
        lost = history[running_id]["status"]
        assert lost["status_str"] == "error" and "stopped while this prompt was running" in json.dumps(lost)
        keyless = history[with_secret]["status"]
        assert keyless["status_str"] == "error" and "api_key_comfy_org" in json.dumps(keyless)
        assert "secret-key" not in (tmp_path / "comfyd.db").read_bytes().decode("latin-1")
        assert server.get_json("/queue") == {"queue_running": [], "queue_pending": []}
        _, number = queue_prompt(server, prompt("", 6))
        assert number > done_number + 5  # numbering goes on from where the killed process was
    finally:
        server.stop()


def test_in_memory_queue_forgets_and_a_damaged_database_is_a_clear_start_error(tmp_path):
    server = Comfyd(tmp_path, "--in-memory-queue")
    try:
        prompt_id, _ = queue_prompt(server, {"prompt": {"1": {"class_type": "PreviewAny", "inputs": {"source": 1}}}})
        wait_until(lambda: server.get_json(f"/history/{prompt_id}"))
        server.restart()
        assert server.get_json("/history") == {} and not (tmp_path / "comfyd.db").exists()
    finally:
        server.stop()

    database = tmp_path / "comfyd.db"
    database.write_bytes(b"this is not a database" * 100)
    result = subprocess.run([sys.executable, "-m", "server", "--cpu", "--port", "1", "--base-directory", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and str(database) in result.stderr and "comfyd:" in result.stderr
