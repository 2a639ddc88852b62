"""The two frontends the journeys run on, and the steps whose selectors differ between them.

Latest: the installed comfyui-frontend-package (1.58), which lists jobs from /api/jobs in its job-queue overlay and
shows errors in an overlay. Pinned: 1.27.10, the version ComfyUI 0.3.64 pins, served through --front-end-version;
it lists jobs from /queue and /history in its queue sidebar and shows errors in dialogs. Each step below is what a
person does in that version's UI; the tests assert through comfyd's own state either way."""
from __future__ import annotations

import os

from tests import fetched
from tests.browser.live import OUTPUT, Comfyd, make_base
from tests.fetched import PINNED_VERSION

# Frontend 1.27.10 throws this on every boot, against upstream ComfyUI too: a setting's onChange runs before the
# setting is registered.
PINNED_BOOT_BUG = "Cannot read properties of undefined (reading 'id')"


def start_pinned(tmp_path_factory) -> Comfyd:
    """comfyd serving frontend 1.27.10 from web_custom_versions, as `--front-end-version` finds it."""
    pinned = fetched.pinned_frontend()
    base = make_base(tmp_path_factory.mktemp("comfyd-pinned"))
    versions = base / "web_custom_versions" / "Comfy-Org_ComfyUI_frontend"
    versions.mkdir(parents=True)
    os.symlink(pinned, versions / PINNED_VERSION)
    # 1.27 has no per-prompt preview setting: previews come from the server's flag.
    return Comfyd(base, "--front-end-version", f"Comfy-Org/ComfyUI_frontend@v{PINNED_VERSION}",
                  "--preview-method", "auto")


def start_latest(tmp_path_factory) -> Comfyd:
    return Comfyd(make_base(tmp_path_factory.mktemp("comfyd")))


class Latest:
    """The installed frontend: test ids on the error overlay, the job-queue overlay and the sidebar buttons."""
    name = "latest"
    suffix = ""
    page_errors_tolerated: tuple[str, ...] = ()
    start = staticmethod(start_latest)

    def screenshot(self, page, name: str) -> None:
        page.screenshot(path=str(OUTPUT / f"{name}{self.suffix}.png"))

    def unexpected_page_errors(self, recorder) -> list[str]:
        return [e for e in recorder.page_errors if not any(t in e for t in self.page_errors_tolerated)]

    # Errors.
    def validation_error(self, page, node: str, missing: str) -> None:
        """Waits for the app's notice that comfyd refused the prompt: `node` lacks the input `missing`."""
        page.get_by_test_id("error-overlay").filter(has_text=f"{node} is missing a required input: {missing}") \
            .wait_for(state="visible", timeout=15_000)

    def close_validation_error(self, page) -> None:
        page.get_by_test_id("error-overlay-dismiss").click()
        page.get_by_test_id("error-overlay").wait_for(state="hidden", timeout=10_000)

    def execution_error(self, page, node: str, title: str, message: str) -> None:
        """Waits for the app's notice that node type `node` (display name `title`) failed, then opens its details
        down to comfyd's `message`."""
        page.get_by_test_id("error-overlay").filter(has_text=f"{title} failed").wait_for(state="visible",
                                                                                         timeout=60_000)
        page.get_by_test_id("error-overlay-see-errors").click()
        page.get_by_text(message).first.wait_for(state="visible", timeout=10_000)

    def close_execution_error(self, page) -> None:
        page.keyboard.press("Escape")

    # Queue.
    def open_queue(self, page):
        """Opens the jobs list, once it shows the pending job, and returns it."""
        page.get_by_test_id("queue-overlay-toggle").first.click()
        jobs = page.get_by_test_id("job-assets-list")
        jobs.wait_for(state="visible", timeout=10_000)
        jobs.get_by_text("Job queued").first.wait_for(state="visible", timeout=10_000)
        return jobs

    def cancel_pending(self, page, jobs) -> None:
        """The pending job's menu cancels it (POST /api/jobs/{id}/cancel)."""
        jobs.get_by_text("Job queued").first.click(button="right")
        page.get_by_role("menuitem", name="Cancel job").click()

    def clear_history(self, page) -> None:
        """The queue panel's menu clears the history, after asking."""
        page.get_by_role("button", name="More options").first.click()
        page.get_by_text("Clear job history").first.click()
        page.get_by_role("button", name="Clear", exact=True).click()

    # Files.
    def open_saved_workflows(self, page) -> None:
        page.get_by_test_id("workflows-tab-button").click()


class Pinned(Latest):
    """Frontend 1.27.10: PrimeVue dialogs for errors, the queue sidebar (task items with their context menu and a
    trash button that asks first), sidebar buttons named by class."""
    name = "pinned"
    suffix = "-pinned"
    page_errors_tolerated = (PINNED_BOOT_BUG,)
    start = staticmethod(start_pinned)

    # Errors come in dialogs: a refused prompt's message lists each node's errors under its type.
    def validation_error(self, page, node: str, missing: str) -> None:
        page.get_by_role("dialog").filter(has_text="Prompt outputs failed validation").filter(has_text=f"{node}:") \
            .filter(has_text=f"Required input is missing: {missing}").wait_for(state="visible", timeout=15_000)

    def close_validation_error(self, page) -> None:
        page.keyboard.press("Escape")
        page.get_by_role("dialog").wait_for(state="hidden", timeout=10_000)

    def execution_error(self, page, node: str, title: str, message: str) -> None:
        page.get_by_role("dialog").filter(has_text=node).filter(has_text=message).wait_for(state="visible",
                                                                                           timeout=60_000)

    close_execution_error = close_validation_error

    def open_queue(self, page):
        page.locator(".queue-tab-button").click()
        tasks = page.locator(".sidebar-content-container")
        tasks.locator(".task-item", has_text="Pending").wait_for(state="visible", timeout=10_000)
        return tasks

    def cancel_pending(self, page, tasks) -> None:
        """The pending task's menu deletes it from the queue (POST /queue {"delete": [id]})."""
        tasks.locator(".task-item", has_text="Pending").click(button="right")
        page.get_by_role("menuitem", name="Delete").click()

    def clear_history(self, page) -> None:
        """The queue sidebar's trash button clears queue and history (POST /queue and /history {"clear": true})."""
        page.locator(".sidebar-content-container .clear-all-button").click()
        page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()

    def open_saved_workflows(self, page) -> None:
        page.locator(".workflows-tab-button").click()


PINNED = Pinned()
FRONTENDS = [Latest(), PINNED]
