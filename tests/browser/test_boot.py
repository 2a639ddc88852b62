"""The official ComfyUI web app against a live comfyd in a real browser: it boots, lists the checkpoint, runs a
workflow and shows the image and the job. The latest frontend (the installed comfyui-frontend-package) is tested
fully; the one ComfyUI 0.3.64 pins (1.27.10) is served through --front-end-version when it is on disk.

Screenshots and the requests the page made go to test-output/browser/."""
from __future__ import annotations

import pytest
from PIL import Image

from tests.browser.frontends import PINNED, start_pinned
from tests.fetched import PINNED_VERSION
from tests.browser.live import (CHECKPOINT, CHECKPOINT_CHOICES, HAS_WORKFLOW, OUTPUT, SAVED_IMAGE, SEEN,
                                WATCH_EXECUTION, boot, close)


def open_default_workflow(page) -> None:
    """What the "Load Default" command does."""
    page.evaluate("async () => { await window.app.loadGraphData() }")
    page.wait_for_function(HAS_WORKFLOW, timeout=30_000)


def registered_types(page) -> set[str]:
    return set(page.evaluate("() => Object.keys(window.LiteGraph.registered_node_types)"))


def test_boot_shows_templates_then_the_default_workflow_and_the_checkpoint(open_page, comfyd):
    page, recorder, templates = boot(open_page, comfyd)
    # A fresh user's first boot opens the template browser: comfyui-workflow-templates' index and thumbnails.
    assert templates is not None, "this test must boot the server's fresh user first"
    page.wait_for_function("() => Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0)"
                           ".length >= 4", timeout=30_000)
    page.screenshot(path=str(OUTPUT / "templates.png"))
    thumbnails = [path for _, path, status in recorder.requests
                  if path.startswith("/templates/") and path.endswith(".webp") and status == 200]
    assert ("GET", "/templates/index.json", 200) in recorder.requests and thumbnails
    close(page, templates)
    open_default_workflow(page)
    assert page.locator("#graph-canvas").is_visible()
    object_info = comfyd.get_json("/api/object_info")
    assert set(object_info) <= registered_types(page), "every comfyd node is registered"
    default_types = page.evaluate("() => window.app.graph._nodes.map(n => n.type)")
    assert default_types and set(default_types) <= set(object_info), "the default workflow has no missing nodes"
    assert CHECKPOINT in page.evaluate(CHECKPOINT_CHOICES)
    page.wait_for_timeout(1000)  # let the canvas paint
    page.screenshot(path=str(OUTPUT / "boot.png"))
    recorder.write("boot")
    assert recorder.failed == []
    assert recorder.page_errors == []
    assert recorder.unexpected_console_errors() == []


def test_run_shows_the_image_and_the_job(open_page, comfyd):
    page, recorder, templates = boot(open_page, comfyd)
    close(page, templates)
    # The frontend's own default workflow, unchanged: Z-Image Turbo at 1024 px, 8 res_multistep steps, on tiny
    # stand-ins of its three model files (a few seconds on a CPU).
    open_default_workflow(page)
    # The whole graph on screen: node images load when drawn.
    page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.Canvas.FitView') }")
    # The user's "Live preview method" setting (the server runs with upstream's default, no previews).
    page.evaluate("async () => { await window.app.extensionManager.setting.set('Comfy.Execution.PreviewMethod',"
                  " 'auto') }")
    sampler = page.evaluate("() => String(window.app.graph._nodes.find(n => n.type === 'KSampler').id)")
    page.evaluate(WATCH_EXECUTION)
    page.locator('[data-testid="queue-button"]').first.click()
    src = page.wait_for_function(SAVED_IMAGE, timeout=120_000, polling=250).json_value()

    history = comfyd.get_json("/api/history")
    assert len(history) == 1
    (entry,) = history.values()
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
    assert {node["class_type"] for node in entry["prompt"][2].values()} >= {
        "UNETLoader", "CLIPLoader", "ModelSamplingAuraFlow", "EmptySD3LatentImage", "KSampler"}
    (image,) = entry["outputs"]["9"]["images"]
    with Image.open(comfyd.base / "output" / image["filename"]) as saved:
        assert saved.size == (1024, 1024)
    assert f"filename={image['filename']}" in src, "the node shows the image comfyd saved"
    # The sampler node's progress bar and live preview are drawn from these events.
    seen = page.evaluate(SEEN)
    assert [value for node, value, _ in seen["progress"] if node == sampler] == list(range(1, 9))
    assert seen["previews"] >= 1

    # Frontend 1.58 lists jobs from /api/jobs only (no fallback to /queue and /history).
    page.locator('[data-testid="queue-overlay-toggle"]').first.click()
    page.get_by_text(image["filename"]).first.wait_for(state="visible", timeout=15_000)
    page.screenshot(path=str(OUTPUT / "run.png"))

    # The bottom panel's terminal reads the server's recent logs and subscribes to new ones.
    with page.expect_response(lambda r: r.url.endswith("/internal/logs/raw")) as raw, \
            page.expect_response(lambda r: r.url.endswith("/internal/logs/subscribe")) as subscribed:
        page.evaluate("async () => { await window.app.extensionManager.command"
                      ".execute('Workspace.ToggleBottomPanelTab.logs-terminal') }")
    assert raw.value.status == 200 and subscribed.value.status == 200
    recorder.write("run")
    assert recorder.failed == []
    assert recorder.page_errors == []
    assert recorder.unexpected_console_errors() == []


@pytest.fixture(scope="module")
def pinned_comfyd(tmp_path_factory):
    server = start_pinned(tmp_path_factory)
    yield server
    server.stop()


def test_pinned_frontend_boots_through_front_end_version(open_page, pinned_comfyd):
    page, recorder, templates = boot(open_page, pinned_comfyd)
    close(page, templates)
    open_default_workflow(page)
    assert page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__") == PINNED_VERSION
    assert set(pinned_comfyd.get_json("/api/object_info")) <= registered_types(page)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(OUTPUT / "boot-pinned.png"))
    recorder.write("boot-pinned")
    assert recorder.failed == []
    assert PINNED.unexpected_page_errors(recorder) == []
    assert recorder.unexpected_console_errors() == []


def test_pinned_frontend_lists_the_checkpoint(open_page, pinned_comfyd):
    """1.27.10 registers model-library providers for ImageOnlyCheckpointLoader, ControlNetLoader,
    UpscaleModelLoader, StyleModelLoader and GLIGENLoader: with any of those node types missing, every model combo
    widget fails to build and CheckpointLoaderSimple lists nothing."""
    page, recorder, templates = boot(open_page, pinned_comfyd)
    close(page, templates)
    assert CHECKPOINT in (page.evaluate(CHECKPOINT_CHOICES) or [])
    assert recorder.unexpected_console_errors() == []


def test_pinned_frontend_runs_its_default_workflow(open_page, pinned_comfyd):
    page, recorder, templates = boot(open_page, pinned_comfyd)
    close(page, templates)
    open_default_workflow(page)
    page.evaluate("() => { window.app.canvas.ds.scale = 0.5; window.app.canvas.ds.offset = [0, 0];"
                  " window.app.canvas.setDirty(true, true) }")  # every node on screen: images load when drawn
    page.evaluate(WATCH_EXECUTION)
    page.locator('[data-testid="queue-button"]').first.click()
    src = page.wait_for_function(SAVED_IMAGE, timeout=120_000, polling=250).json_value()
    (entry,) = pinned_comfyd.get_json("/api/history").values()
    assert entry["status"]["status_str"] == "success"
    (image,) = entry["outputs"]["9"]["images"]
    assert f"filename={image['filename']}" in src
    seen = page.evaluate(SEEN)
    assert [value for node, value, _ in seen["progress"] if node == "3"] == list(range(1, 21))
    assert seen["previews"] >= 1
    # 1.27 lists the job from /queue and /history.
    page.screenshot(path=str(OUTPUT / "run-pinned.png"))
    recorder.write("run-pinned")
    assert recorder.failed == []
    assert PINNED.unexpected_page_errors(recorder) == []
    assert recorder.unexpected_console_errors() == []
