"""User journeys through the official web app against a live comfyd: errors, files, interrupting and managing the
queue. Each runs on both frontends (the installed one and 1.27.10, which ComfyUI 0.3.64 pins; see frontends.py)
and ends with a screenshot in test-output/browser/ (suffix -pinned for 1.27)."""
from __future__ import annotations

import copy
import json

import pytest
from PIL import Image

from tests.browser.frontends import FRONTENDS
from tests.browser.live import (READY, SAVED_IMAGE, WORKFLOW, boot, close, load_api_workflow, run_button,
                                wait_until)

# The frontend logs the rejected /api/prompt as an uncaught PromptExecutionError after it has shown the error.
PROMPT_REJECTED = "PromptExecutionError"


# Module scope and parametrized: pytest runs all journeys on one frontend's server, stops it, then the other's.
@pytest.fixture(scope="module", params=FRONTENDS, ids=lambda ui: ui.name)
def served(request, tmp_path_factory):
    """(comfyd, frontend): a live comfyd serving that frontend, shared by the module's tests."""
    server = request.param.start(tmp_path_factory)
    yield server, request.param
    server.stop()


def started_app(open_page, server):
    page, recorder, templates = boot(open_page, server)
    close(page, templates)
    return page, recorder


def workflow(**changes) -> dict:
    """The tiny text-to-image workflow with changed inputs: {"3.steps": 9} sets node 3's steps; None removes."""
    changed = copy.deepcopy(WORKFLOW)
    for key, value in changes.items():
        node, name = key.split(".")
        if value is None:
            del changed[node]["inputs"][name]
        else:
            changed[node]["inputs"][name] = value
    return changed


NODE_ERRORS = "() => Object.keys(window.app.lastNodeErrors || {})"  # the nodes the canvas outlines in red


def test_errors_are_shown_and_a_later_run_succeeds(open_page, served):
    comfyd, ui = served
    page, recorder = started_app(open_page, comfyd)

    # Validation: comfyd answers 400 with node_errors; the app names the node and the missing input and marks it.
    load_api_workflow(page, workflow(**{"3.model": None}), "missing-model.json")
    with page.expect_response(lambda r: r.url.endswith("/api/prompt")) as answer:
        run_button(page).click()
    assert answer.value.status == 400
    assert "3" in answer.value.json()["node_errors"]
    ui.validation_error(page, node="KSampler", missing="model")
    assert page.evaluate(NODE_ERRORS) == ["3"]
    ui.screenshot(page, "journey-validation-error")
    ui.close_validation_error(page)

    # Run time: SaveImage refuses a prefix outside the output folder; the app shows comfyd's message.
    load_api_workflow(page, workflow(**{"9.filename_prefix": "../escape"}), "escape.json")
    run_button(page).click()
    (failed,) = wait_until(lambda: list(comfyd.get_json("/api/history").values()), what="the failed run's history")
    assert failed["status"]["status_str"] == "error"
    error = dict(failed["status"]["messages"])["execution_error"]
    assert error["node_type"] == "SaveImage" and "../escape" in error["exception_message"]
    ui.execution_error(page, node="SaveImage", title="Save Image", message=error["exception_message"])
    ui.screenshot(page, "journey-execution-error")
    assert not list((comfyd.base).glob("escape*")), "nothing was written outside the output folder"

    # The same app then runs a correct workflow.
    ui.close_execution_error(page)
    load_api_workflow(page, workflow(), "fixed.json")
    run_button(page).click()
    page.wait_for_function(SAVED_IMAGE, timeout=90_000, polling=250)
    statuses = [entry["status"]["status_str"] for entry in comfyd.get_json("/api/history").values()]
    assert sorted(statuses) == ["error", "success"]
    ui.screenshot(page, "journey-errors-then-success")
    recorder.write("journey-errors" + ui.suffix)
    assert recorder.failed == ["400 POST /api/prompt"]
    assert ui.unexpected_page_errors(recorder) == []
    assert recorder.unexpected_console_errors(tolerated=(PROMPT_REJECTED,)) == []


def queue_counts(server) -> tuple[int, int]:
    queue = server.get_json("/api/queue")
    return len(queue["queue_running"]), len(queue["queue_pending"])


def test_interrupt_and_queue_management(open_page, served):
    comfyd, ui = served
    page, recorder = started_app(open_page, comfyd)
    comfyd.post_json("/api/history", {"clear": True})
    # Thousands of steps: the job runs until the UI cancels it.
    load_api_workflow(page, workflow(**{"3.steps": 10_000}), "long.json")
    run_button(page).click()
    wait_until(lambda: queue_counts(comfyd) == (1, 0), what="the long job to run")
    run_button(page).click()
    wait_until(lambda: queue_counts(comfyd) == (1, 1), what="a second job to wait")
    running = comfyd.get_json("/api/queue")["queue_running"][0][1]
    pending = comfyd.get_json("/api/queue")["queue_pending"][0][1]

    # The pending job's menu in the queue panel takes it off the queue; the running one goes on.
    panel = ui.open_queue(page)
    ui.screenshot(page, "journey-queue-two-jobs")
    ui.cancel_pending(page, panel)
    wait_until(lambda: queue_counts(comfyd) == (1, 0), what="the pending job to go")
    assert comfyd.get_json("/api/queue")["queue_running"][0][1] == running
    assert pending not in comfyd.get_json("/api/history")

    # The action bar's cancel button interrupts the running job.
    page.get_by_role("button", name="Cancel current run").click()
    wait_until(lambda: queue_counts(comfyd) == (0, 0), what="the running job to stop")
    history = wait_until(lambda: comfyd.get_json("/api/history"), what="the interrupted job's history")
    assert list(history) == [running]
    assert [name for name, _ in history[running]["status"]["messages"]][-1] == "execution_interrupted"
    ui.screenshot(page, "journey-interrupted")
    # comfyd's job view keeps both, as cancelled, whichever route took the pending one off the queue.
    jobs = {job["id"]: job["status"] for job in comfyd.get_json("/api/jobs")["jobs"]}
    assert jobs == {running: "cancelled", pending: "cancelled"}

    # The queue panel clears the history, after asking.
    ui.clear_history(page)
    wait_until(lambda: comfyd.get_json("/api/history") == {}, what="the history to clear")
    assert comfyd.get_json("/api/jobs")["jobs"] == []
    ui.screenshot(page, "journey-history-cleared")
    recorder.write("journey-queue" + ui.suffix)
    assert recorder.failed == []
    assert ui.unexpected_page_errors(recorder) == []
    assert recorder.unexpected_console_errors() == []


UPLOAD_BUTTON = """() => {
    const node = window.app.graph._nodes.find(n => n.type === 'LoadImage');
    const widget = node.widgets.find(w => w.type === 'button');
    const ds = window.app.canvas.ds, box = window.app.canvas.canvas.getBoundingClientRect();
    const x = node.pos[0] + node.size[0] / 2, y = node.pos[1] + widget.y + widget.computedHeight / 2;
    return [box.left + (x + ds.offset[0]) * ds.scale, box.top + (y + ds.offset[1]) * ds.scale];
}"""
LOADED_IMAGE = """() => {
    const node = window.app.graph._nodes.find(n => n.type === 'LoadImage');
    const img = node && node.imgs && node.imgs[0];
    return img && img.complete && img.naturalWidth > 0 ? [node.widgets[0].value, img.src] : null;
}"""
NODE_TYPES = "() => window.app.graph._nodes.map(n => n.type).sort()"
NEW_BLANK_WORKFLOW = """async () => {
    await window.app.extensionManager.command.execute('Comfy.NewBlankWorkflow');
}"""
# What the browser does when a file is dragged from the desktop and let go over the canvas: drag events carrying a
# DataTransfer that holds the file (built here from its bytes).
DROP_FILE = """([bytes, name, type]) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], name, {type}));
    const canvas = document.querySelector('#graph-canvas'), box = canvas.getBoundingClientRect();
    const at = {clientX: box.left + box.width / 2, clientY: box.top + box.height / 2};
    for (const kind of ['dragenter', 'dragover', 'drop'])
        canvas.dispatchEvent(new DragEvent(kind, {bubbles: true, cancelable: true, dataTransfer: data, ...at}));
}"""
DEV_MODE = "Comfy.DevMode"


def dev_mode_switch(page):
    """The settings dialog (Ctrl+,) searched down to its one dev mode switch."""
    page.keyboard.press("Control+Comma")
    settings = page.get_by_role("dialog")
    settings.get_by_placeholder("Search Settings").fill("dev mode")
    switches = settings.get_by_role("switch")
    wait_until(lambda: switches.count() == 1, timeout=10, what="the search to leave the dev mode switch")
    return switches


def test_files_uploads_workflows_and_settings(open_page, served, tmp_path):
    comfyd, ui = served
    page, recorder = started_app(open_page, comfyd)
    (comfyd.base / "input").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (0, 0, 255)).save(comfyd.base / "input" / "start.png")

    # The LoadImage node's upload button opens the file chooser; the uploaded image shows on the node.
    picked = tmp_path / "red square.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(picked)
    load_api_workflow(page, {"1": {"class_type": "LoadImage", "inputs": {"image": "start.png"}}}, "upload.json")
    page.wait_for_function(LOADED_IMAGE, timeout=15_000)
    page.wait_for_timeout(500)  # the view settles after fitting
    with page.expect_file_chooser() as chooser:
        page.mouse.click(*page.evaluate(UPLOAD_BUTTON))
    chooser.value.set_files(picked)
    page.wait_for_function(f"() => ({LOADED_IMAGE})()?.[0] === {picked.name!r}", timeout=15_000)
    with Image.open(comfyd.base / "input" / picked.name) as stored:
        assert stored.size == (16, 16) and stored.getpixel((0, 0)) == (255, 0, 0)
    ui.screenshot(page, "journey-upload")

    # A PNG comfyd saved carries the workflow: opening it (Ctrl+O) on a blank canvas restores the graph.
    load_api_workflow(page, WORKFLOW, "to-png.json")
    expected_types = page.evaluate(NODE_TYPES)
    run_button(page).click()
    src = page.wait_for_function(SAVED_IMAGE, timeout=90_000, polling=250).json_value()
    (entry,) = [e for e in comfyd.get_json("/api/history").values() if "9" in e["outputs"]
                and e["outputs"]["9"]["images"][0]["filename"] in src]
    saved = comfyd.base / "output" / entry["outputs"]["9"]["images"][0]["filename"]
    page.evaluate(NEW_BLANK_WORKFLOW)
    page.wait_for_function("() => window.app.graph._nodes.length === 0", timeout=10_000)
    with page.expect_file_chooser() as chooser:
        page.locator("#graph-canvas").click(position={"x": 300, "y": 300})
        page.keyboard.press("Control+o")
    chooser.value.set_files(saved)
    page.wait_for_function("() => window.app.graph._nodes.length > 0", timeout=15_000)
    assert page.evaluate(NODE_TYPES) == expected_types
    ui.screenshot(page, "journey-png-workflow")

    # Dragging that PNG back onto a blank canvas restores its workflow too.
    page.evaluate(NEW_BLANK_WORKFLOW)
    page.wait_for_function("() => window.app.graph._nodes.length === 0", timeout=10_000)
    page.evaluate(DROP_FILE, [list(saved.read_bytes()), saved.name, "image/png"])
    page.wait_for_function("() => window.app.graph._nodes.length > 0", timeout=15_000)
    assert page.evaluate(NODE_TYPES) == expected_types
    ui.screenshot(page, "journey-png-dropped")

    # Ctrl+S asks for a name and saves into user/default/workflows; after a reload the sidebar lists it.
    page.keyboard.press("Control+s")
    name_box = page.get_by_role("dialog").get_by_role("textbox")
    name_box.fill("journey tiny")
    with page.expect_response(lambda r: "/api/userdata/workflows%2Fjourney%20tiny.json" in r.url) as stored:
        name_box.press("Enter")
    assert stored.value.status == 200
    on_disk = comfyd.base / "user" / "default" / "workflows" / "journey tiny.json"
    assert sorted(n["type"] for n in json.loads(on_disk.read_text())["nodes"]) == expected_types
    page.reload()
    page.wait_for_function(READY, timeout=60_000)
    ui.open_saved_workflows(page)
    page.locator(".sidebar-content-container").get_by_text("journey tiny").first.wait_for(state="visible",
                                                                                     timeout=15_000)
    ui.screenshot(page, "journey-saved-workflow")

    # A setting switched in the settings dialog is kept by comfyd across a restart (a fresh browser profile sees it).
    assert not comfyd.get_json("/api/settings").get(DEV_MODE)
    with page.expect_response(lambda r: r.url.endswith(f"/api/settings/{DEV_MODE}")) as stored:
        dev_mode_switch(page).click()
    assert stored.value.status == 200
    ui.screenshot(page, "journey-setting")
    recorder.write("journey-files" + ui.suffix)
    assert recorder.failed == []
    assert ui.unexpected_page_errors(recorder) == []
    assert recorder.unexpected_console_errors() == []

    comfyd.restart()
    assert comfyd.get_json("/api/settings")[DEV_MODE] is True
    page, recorder = started_app(open_page, comfyd)
    assert page.evaluate(f"() => window.app.extensionManager.setting.get({DEV_MODE!r})") is True
    assert dev_mode_switch(page).is_checked()
    ui.screenshot(page, "journey-setting-after-restart")
    assert recorder.failed == []
