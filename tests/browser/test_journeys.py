"""User journeys through the official web app (the installed frontend) against a live comfyd: errors, files,
interrupting and managing the queue. Each ends with a screenshot in test-output/browser/."""
from __future__ import annotations

import copy
import json
import time

from PIL import Image

from tests.browser.live import OUTPUT, READY, SAVED_IMAGE, WORKFLOW, boot, close, load_api_workflow, run_button

# The frontend logs the rejected /api/prompt as an uncaught PromptExecutionError after it has shown the error.
PROMPT_REJECTED = "PromptExecutionError"


def started_app(open_page, server):
    page, recorder, templates = boot(open_page, server)
    close(page, templates)
    return page, recorder


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


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


def test_errors_are_shown_and_a_later_run_succeeds(open_page, comfyd):
    page, recorder = started_app(open_page, comfyd)
    overlay = page.locator('[data-testid="error-overlay"]')

    # Validation: comfyd answers 400 with node_errors; the app names the node and the missing input.
    load_api_workflow(page, workflow(**{"3.model": None}), "missing-model.json")
    with page.expect_response(lambda r: r.url.endswith("/api/prompt")) as answer:
        run_button(page).click()
    assert answer.value.status == 400
    assert "3" in answer.value.json()["node_errors"]
    overlay.wait_for(state="visible", timeout=15_000)
    assert "KSampler is missing a required input: model" in overlay.inner_text()
    page.screenshot(path=str(OUTPUT / "journey-validation-error.png"))
    page.locator('[data-testid="error-overlay-dismiss"]').click()
    overlay.wait_for(state="hidden", timeout=10_000)

    # Run time: SaveImage refuses a prefix outside the output folder; the details show comfyd's message.
    load_api_workflow(page, workflow(**{"9.filename_prefix": "../escape"}), "escape.json")
    run_button(page).click()
    overlay.wait_for(state="visible", timeout=60_000)
    assert "Save Image failed" in overlay.inner_text()
    (failed,) = comfyd.get_json("/api/history").values()
    assert failed["status"]["status_str"] == "error"
    error = dict(failed["status"]["messages"])["execution_error"]
    assert error["node_type"] == "SaveImage" and "../escape" in error["exception_message"]
    page.locator('[data-testid="error-overlay-see-errors"]').click()
    page.get_by_text(error["exception_message"]).first.wait_for(state="visible", timeout=10_000)
    page.screenshot(path=str(OUTPUT / "journey-execution-error.png"))
    assert not list((comfyd.base).glob("escape*")), "nothing was written outside the output folder"

    # The same app then runs a correct workflow.
    page.keyboard.press("Escape")
    load_api_workflow(page, workflow(), "fixed.json")
    run_button(page).click()
    page.wait_for_function(SAVED_IMAGE, timeout=90_000, polling=250)
    statuses = [entry["status"]["status_str"] for entry in comfyd.get_json("/api/history").values()]
    assert sorted(statuses) == ["error", "success"]
    page.screenshot(path=str(OUTPUT / "journey-errors-then-success.png"))
    recorder.write("journey-errors")
    assert recorder.failed == ["400 POST /api/prompt"]
    assert recorder.page_errors == []
    assert recorder.unexpected_console_errors(tolerated=(PROMPT_REJECTED,)) == []


def queue_counts(server) -> tuple[int, int]:
    queue = server.get_json("/api/queue")
    return len(queue["queue_running"]), len(queue["queue_pending"])


def test_interrupt_and_queue_management(open_page, comfyd):
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

    # The pending job's menu in the queue panel cancels it (POST /api/jobs/{id}/cancel); the running one goes on.
    page.locator('[data-testid="queue-overlay-toggle"]').first.click()
    job_list = page.locator('[data-testid="job-assets-list"]')
    job_list.wait_for(state="visible", timeout=10_000)
    page.screenshot(path=str(OUTPUT / "journey-queue-two-jobs.png"))
    job_list.get_by_text("Job queued").first.click(button="right")
    page.get_by_role("menuitem", name="Cancel job").click()
    wait_until(lambda: queue_counts(comfyd) == (1, 0), what="the pending job to go")
    assert comfyd.get_json("/api/queue")["queue_running"][0][1] == running
    assert pending not in comfyd.get_json("/api/history")

    # The action bar's cancel button interrupts the running job.
    page.get_by_role("button", name="Cancel current run").click()
    wait_until(lambda: queue_counts(comfyd) == (0, 0), what="the running job to stop")
    history = wait_until(lambda: comfyd.get_json("/api/history"), what="the interrupted job's history")
    assert list(history) == [running]
    assert [name for name, _ in history[running]["status"]["messages"]][-1] == "execution_interrupted"
    page.screenshot(path=str(OUTPUT / "journey-interrupted.png"))

    # The queue panel's menu clears the history, after asking.
    page.get_by_role("button", name="More options").first.click()
    page.get_by_text("Clear job history").first.click()
    jobs = {job["id"]: job["status"] for job in comfyd.get_json("/api/jobs")["jobs"]}
    assert jobs == {running: "cancelled", pending: "cancelled"}
    page.get_by_role("button", name="Clear", exact=True).click()
    wait_until(lambda: comfyd.get_json("/api/history") == {}, what="the history to clear")
    assert comfyd.get_json("/api/jobs")["jobs"] == []
    page.screenshot(path=str(OUTPUT / "journey-history-cleared.png"))
    recorder.write("journey-queue")
    assert recorder.failed == []
    assert recorder.page_errors == []
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


def test_files_uploads_workflows_and_settings(open_page, comfyd, tmp_path):
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
    page.screenshot(path=str(OUTPUT / "journey-upload.png"))

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
    page.screenshot(path=str(OUTPUT / "journey-png-workflow.png"))

    # Dragging that PNG back onto a blank canvas restores its workflow too.
    page.evaluate(NEW_BLANK_WORKFLOW)
    page.wait_for_function("() => window.app.graph._nodes.length === 0", timeout=10_000)
    page.evaluate(DROP_FILE, [list(saved.read_bytes()), saved.name, "image/png"])
    page.wait_for_function("() => window.app.graph._nodes.length > 0", timeout=15_000)
    assert page.evaluate(NODE_TYPES) == expected_types
    page.screenshot(path=str(OUTPUT / "journey-png-dropped.png"))

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
    page.get_by_test_id("workflows-tab-button").click()
    page.get_by_text("journey tiny").first.wait_for(state="visible", timeout=15_000)
    page.screenshot(path=str(OUTPUT / "journey-saved-workflow.png"))

    # A setting switched in the settings dialog is kept by comfyd across a restart (a fresh browser profile sees it).
    assert not comfyd.get_json("/api/settings").get(DEV_MODE)
    with page.expect_response(lambda r: r.url.endswith(f"/api/settings/{DEV_MODE}")) as stored:
        dev_mode_switch(page).click()
    assert stored.value.status == 200
    page.screenshot(path=str(OUTPUT / "journey-setting.png"))
    recorder.write("journey-files")
    assert recorder.failed == []
    assert recorder.page_errors == []
    assert recorder.unexpected_console_errors() == []

    comfyd.restart()
    assert comfyd.get_json("/api/settings")[DEV_MODE] is True
    page, recorder = started_app(open_page, comfyd)
    assert page.evaluate(f"() => window.app.extensionManager.setting.get({DEV_MODE!r})") is True
    assert dev_mode_switch(page).is_checked()
    page.screenshot(path=str(OUTPUT / "journey-setting-after-restart.png"))
    assert recorder.failed == []
