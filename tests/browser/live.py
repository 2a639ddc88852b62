"""A live comfyd (a subprocess, started as a person starts it) and a recorder of what a browser page does: every
request to comfyd with its answer, the ones that failed, console errors and uncaught page errors."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tests.fixtures import z_image
from tests.fixtures.checkpoints import write_sd15

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = ROOT / "test-output" / "browser"
CHECKPOINT = "tiny-sd15.safetensors"
PINNED_DEFAULT_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"  # what 1.27's default workflow loads
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Answers upstream ComfyUI gives as well and the frontend expects on a fresh user: user.css is linked from
# index.html, the workflow and subgraph folders do not exist yet, comfy.templates.json is a legacy file, and the
# workflows sidebar's order file .index.json is only written once a user reorders it.
EXPECTED_404 = ("/user.css", "/api/userdata/user.css", "/api/userdata?dir=workflows&", "/api/userdata?dir=subgraphs",
                "/api/userdata/comfy.templates.json", "/api/userdata/workflows%2F.index.json",
                # The model library asks every model for a thumbnail and its safetensors metadata; upstream answers
                # 404 too when there is none.
                "/api/experiment/models/preview/", "/api/view_metadata/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Comfyd:
    """`python -m server` on a free port with its own base directory; stopped by PID."""

    def __init__(self, base: Path, *extra_args: str):
        self.base = base
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / "comfyd.log"
        self.args = [sys.executable, "-m", "server", "--listen", "127.0.0.1", "--port", str(self.port), "--cpu",
                     "--base-directory", str(base), *extra_args]
        self._start()

    def _start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(90)

    def restart(self) -> None:
        """Stop and start again on the same port and base directory."""
        self.stop()
        self._start()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"comfyd exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/api/system_stats", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"comfyd did not answer within {timeout}s:\n{self.log.read_text()}")

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.load(resp)

    def post_json(self, path: str, body: dict) -> int:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait(timeout=20)


def make_base(base: Path) -> Path:
    """A data folder with the tiny SD1.5 checkpoint and tiny stand-ins of the files the two frontends' default
    workflows load, under their real names (1.58: Z-Image Turbo; 1.27: an SD1.5 checkpoint)."""
    checkpoint = base / "models" / "checkpoints" / CHECKPOINT
    checkpoint.parent.mkdir(parents=True)
    write_sd15(checkpoint, seed=0)
    write_sd15(checkpoint.with_name(PINNED_DEFAULT_CHECKPOINT), seed=0)
    z_image.install(base / "models")
    return base


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    """`condition()`'s first truthy value, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Recorder:
    """What the page did: every request, the same-origin ones that failed, console errors, page errors."""

    def __init__(self, page, origin: str):
        self.origin = origin
        self.requests: list[tuple[str, str, int | None]] = []
        self.failed: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self._answered = set()
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_failed)
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def _local(self, url: str) -> str | None:
        """The path and query of a request to comfyd; None for other hosts (they fail offline) and blob:/data:."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            return None
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _on_response(self, response) -> None:
        self._answered.add(response.request)
        local = self._local(response.url)
        if local is None:
            return
        self.requests.append((response.request.method, local, response.status))
        if response.status >= 400 and not (response.status == 404 and local.startswith(EXPECTED_404)):
            self.failed.append(f"{response.status} {response.request.method} {local}")

    def _on_failed(self, request) -> None:
        local = self._local(request.url)
        # A request whose answer arrived and was not read (an ignored POST reply, a 404 stylesheet) is reported
        # as aborted too; only requests without an answer count here.
        if local is not None and request not in self._answered:
            self.requests.append((request.method, local, None))
            self.failed.append(f"{request.failure} {request.method} {local}")

    def unexpected_console_errors(self, tolerated: tuple[str, ...] = ()) -> list[str]:
        """Console errors other than the browser's own line for each failed resource load (those are judged by
        status above: expected 404s, or hosts unreachable offline) and `tolerated` known frontend bugs."""
        return [e for e in self.console_errors
                if not e.startswith("Failed to load resource:") and not any(t in e for t in tolerated)]

    def write(self, name: str) -> None:
        """test-output/browser/<name>-requests.txt: every request to comfyd with its status, for the record."""
        OUTPUT.mkdir(parents=True, exist_ok=True)
        lines = sorted({f"{method} {path.split('?')[0] if path.startswith('/assets/') else path} -> {status}"
                        for method, path, status in self.requests})
        (OUTPUT / f"{name}-requests.txt").write_text("\n".join(lines) + "\n")


# Booted: the app, its canvas and the node types registered.
READY = """() => !!(window.app && window.app.graph && window.app.canvas && document.querySelector('#graph-canvas')
    && Object.keys((window.LiteGraph || {}).registered_node_types || {}).length > 0)"""
HAS_WORKFLOW = "() => window.app.graph._nodes.length > 0"
SOCKET_OPEN = "() => window.comfyAPI.api.api.socket && window.comfyAPI.api.api.socket.readyState === 1"
CHECKPOINT_CHOICES = """() => {
    const node = window.LiteGraph.createNode('CheckpointLoaderSimple');
    const widget = node && node.widgets.find(w => w.name === 'ckpt_name');
    return widget ? widget.options.values : null;
}"""
SAVED_IMAGE = """() => {
    const node = window.app.graph._nodes.find(n => n.type === 'SaveImage');
    const img = node && node.imgs && node.imgs[0];
    return img && img.complete && img.naturalWidth > 0 ? img.src : null;
}"""
# Counts what the app's API client hands the UI while a prompt runs: `progress` events per node and binary
# preview frames (`b_preview`), the events the node progress bars and live previews are drawn from.
WATCH_EXECUTION = """() => {
    const api = window.comfyAPI.api.api;
    window.__seen = {progress: [], previews: 0};
    api.addEventListener('progress', e => window.__seen.progress.push([String(e.detail.node), e.detail.value,
                                                                      e.detail.max]));
    api.addEventListener('b_preview', () => { window.__seen.previews += 1; });
}"""
SEEN = "() => window.__seen"
# Text to image on the tiny checkpoint, small and short so the CPU run takes seconds.
WORKFLOW = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 3, "cfg": 7.0, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                               "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "browser", "images": ["8", 0]}},
}


def boot(open_page, server):
    """Open the app -> (page, recorder, template browser): a fresh user's first boot opens the template browser
    on an empty canvas (None on later boots)."""
    first_run = not server.get_json("/api/settings").get("Comfy.TutorialCompleted")
    page, recorder = open_page(server.url)
    page.wait_for_function(READY, timeout=60_000)
    page.wait_for_function(SOCKET_OPEN, timeout=30_000)
    page.locator('[data-testid="queue-button"]').first.wait_for(state="visible", timeout=30_000)
    templates = None
    if first_run:
        templates = page.get_by_role("dialog").first
        templates.wait_for(state="visible", timeout=30_000)
    return page, recorder, templates


def close(page, dialog) -> None:
    if dialog is not None:
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=10_000)


def load_api_workflow(page, workflow: dict, name: str) -> None:
    """Open an API-format workflow the way "open workflow" does with a .json file, fitted to the view."""
    page.evaluate("async ([w, n]) => { await window.app.loadApiJson(w, n) }", [workflow, name])
    page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.Canvas.FitView') }")


def run_button(page):
    return page.locator('[data-testid="queue-button"]').first
