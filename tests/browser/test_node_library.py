"""Journey 1, the node side: the node search finds comfyd's nodes with their categories, adds the chosen one, and
its documentation (comfyui-embedded-docs, served at /docs) opens in the properties panel."""
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
