"""The latest frontend's libraries. Journey 1, the node side: the node search finds comfyd's nodes with their
categories, adds the chosen one, and its documentation (comfyui-embedded-docs, served at /docs) opens in the
properties panel. The model library lists the model folders with thumbnails; the media assets show what ran."""
from __future__ import annotations

from tests.browser.live import OUTPUT, boot, close

NODE, CATEGORY = "ModelSamplingAuraFlow", "advanced / model"


def test_node_search_adds_a_node_and_its_docs_open(open_page, comfyd):
    page, recorder, templates = boot(open_page, comfyd)
    close(page, templates)
    page.evaluate("async () => { await window.app.extensionManager.command.execute('Workspace.SearchBox.Toggle') }")
    page.keyboard.type("ModelSamplingAura")
    option = page.get_by_role("option").filter(has_text=NODE).first
    option.wait_for(state="visible", timeout=15_000)
    assert CATEGORY in option.inner_text()
    page.screenshot(path=str(OUTPUT / "node-search.png"))
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => window.app.graph._nodes.some(n => n.type === '{NODE}')", timeout=10_000)

    page.evaluate(f"() => window.app.canvas.selectNode(window.app.graph._nodes.find(n => n.type === '{NODE}'))")
    with page.expect_response(lambda r: r.url.endswith(f"/docs/{NODE}/en.md")) as doc:
        page.get_by_role("button", name="Toggle properties panel").first.click()
        page.get_by_role("tab", name="Info").or_(page.get_by_role("button", name="Info")).first.click()
    assert doc.value.status == 200 and doc.value.headers["content-type"].startswith("text/markdown")
    page.get_by_role("heading", name=NODE).first.wait_for(state="visible", timeout=10_000)
    page.screenshot(path=str(OUTPUT / "node-docs.png"))
    recorder.write("node-library")
    assert recorder.failed == []
    assert recorder.page_errors == []
    assert recorder.unexpected_console_errors() == []


def test_model_library_lists_the_models_with_their_thumbnails(open_page, comfyd):
    """1.58's model library: folders from /experiment/models, files from /experiment/models/{folder}, and a
    thumbnail from /experiment/models/preview/... when an image sits beside the model (others answer 404, as
    upstream)."""
    from PIL import Image

    from tests.browser.live import CHECKPOINT

    stem = CHECKPOINT.rsplit(".", 1)[0]
    Image.new("RGB", (32, 32), (200, 30, 30)).save(comfyd.base / "models" / "checkpoints" / f"{stem}.png")
    page, recorder, templates = boot(open_page, comfyd)
    close(page, templates)
    page.get_by_role("button", name="Model Library (m)").click()
    with page.expect_response(lambda r: r.url.endswith(f"/preview/checkpoints/0/{stem}.webp")) as thumbnail:
        page.get_by_text("checkpoints").first.click()
    assert thumbnail.value.status == 200 and thumbnail.value.headers["content-type"] == "image/webp"
    page.get_by_text(stem, exact=True).first.wait_for(state="visible", timeout=10_000)
    thumb = page.locator(f'[style*="preview/checkpoints/0/{stem}.webp"]').first
    thumb.wait_for(state="visible", timeout=10_000)  # drawn as the item's background image
    size = page.evaluate(f"""async () => {{ const r = await fetch('/api/experiment/models/preview/checkpoints/0/{stem}.webp');
        const bitmap = await createImageBitmap(await r.blob()); return [bitmap.width, bitmap.height]; }}""")
    assert size == [32, 32]
    page.screenshot(path=str(OUTPUT / "model-library.png"))
    assert recorder.failed == []
    assert recorder.unexpected_console_errors() == []


def test_assets_sidebar_shows_the_generated_image(open_page, comfyd):
    """1.58's media assets: finished jobs from /api/jobs, each image from /api/view."""
    from tests.browser.live import SAVED_IMAGE, WORKFLOW, load_api_workflow, run_button

    page, recorder, templates = boot(open_page, comfyd)
    close(page, templates)
    load_api_workflow(page, WORKFLOW, "assets.json")
    run_button(page).click()
    page.wait_for_function(SAVED_IMAGE, timeout=90_000)
    (entry,) = [e for e in comfyd.get_json("/api/history").values() if "9" in e["outputs"]][-1:]
    filename = entry["outputs"]["9"]["images"][0]["filename"]
    page.get_by_role("button", name="Assets (a)").click()
    page.get_by_text(filename.rsplit(".", 1)[0], exact=True).first.wait_for(state="visible", timeout=15_000)
    page.wait_for_function(f"""() => Array.from(document.images).some(i => i.src.includes('filename={filename}')
        && i.complete && i.naturalWidth === 64)""", timeout=10_000)
    page.screenshot(path=str(OUTPUT / "assets.png"))
    recorder.write("assets")
    assert recorder.failed == []
    assert recorder.unexpected_console_errors() == []
