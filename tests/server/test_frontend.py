"""The web frontend and what it needs besides the API: the static routes (/, the bundle, /templates, /docs,
/extensions) with their media types and cache headers, the --front-end-* flags, the /system_stats version fields,
/internal/*, the `logs` websocket feed and PREVIEW_IMAGE_WITH_METADATA frames."""
from __future__ import annotations

import asyncio
import importlib.metadata
import io
import json
import logging
import os
import re
import struct
import time

import pytest
from PIL import Image

from engine import Settings
from server import frontend
from server.__main__ import main, parse_args
from server.app import build_registry, create_app
from server.frontend import Frontend, FrontendError, resolve_web_root
from server.keys import HUB
from tests.conftest import messages_until, next_message, run_finished
from tests.e2e.test_txt2img import default_workflow
from tests.fixtures.checkpoints import write_sd15

INDEX = "<!doctype html><html><head><title>ComfyUI</title></head><body></body></html>"
NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"}


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def write(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)


@pytest.fixture
def web_root(tmp_path):
    """A frontend build as --front-end-root serves it."""
    root = tmp_path / "web"
    write(root / "index.html", INDEX)
    write(root / "assets" / "index-abc.js", "export const x = 1;")
    write(root / "assets" / "lib" / "vue.mjs", "export default {};")
    write(root / "assets" / "style.css", "body{}")
    write(root / "assets" / "logo.png", png_bytes())
    write(root / "assets" / "manifest.json", "{}")
    write(root / "fonts" / "inter.woff2", b"wOF2")
    write(root / "scripts" / "app.js", "export const app = window.comfyAPI.app.app;")
    write(root / "extensions" / "core" / "groupNode.js", "// shim")
    write(root / "extensions" / "core" / "load3d" / "Scene.js", "// shim")
    write(tmp_path / "secret.txt", "outside the web root")
    return root


@pytest.fixture
async def web(aiohttp_client, tmp_path, web_root):
    settings = Settings(base_directory=tmp_path / "base", front_end_root=web_root)
    return await aiohttp_client(create_app(settings, build_registry(settings)))


# -- the web app -------------------------------------------------------------------------------------------------

async def test_index_is_the_frontend_with_no_cache_headers(web):
    resp = await web.get("/")
    assert resp.status == 200 and await resp.text() == INDEX
    assert resp.headers["Content-Type"] == "text/html"
    assert {k: resp.headers[k] for k in NO_CACHE} == NO_CACHE


@pytest.mark.parametrize("path, media_type, cache", [
    ("/assets/index-abc.js", "text/javascript; charset=utf-8", "no-cache"),
    ("/assets/lib/vue.mjs", "text/javascript; charset=utf-8", None),
    ("/scripts/app.js", "text/javascript; charset=utf-8", "no-cache"),
    ("/assets/style.css", "text/css; charset=utf-8", "no-cache"),
    ("/assets/logo.png", "image/png", "public, max-age=86400"),
    ("/assets/manifest.json", "application/json; charset=utf-8", None),
    ("/fonts/inter.woff2", "font/woff2", None),
    ("/extensions/core/groupNode.js", "text/javascript; charset=utf-8", "no-cache"),
])
async def test_bundle_files_have_their_media_type_and_upstreams_cache_policy(web, path, media_type, cache):
    resp = await web.get(path)
    assert resp.status == 200, path
    assert resp.headers["Content-Type"] == media_type
    assert resp.headers.get("Cache-Control") == cache


async def test_api_routes_win_over_the_bundle_and_unknown_files_are_404(web, web_root):
    write(web_root / "queue", "not the queue")
    assert "queue_running" in await (await web.get("/queue")).json()
    for path in ("/nope.js", "/api/nonexistent"):  # as upstream: an empty 404
        resp = await web.get(path)
        assert resp.status == 404 and await resp.read() == b""
    missing_image = await web.get("/assets/missing.png")
    assert missing_image.status == 404 and missing_image.headers["Cache-Control"] == "public, max-age=3600"


@pytest.mark.parametrize("path, statuses", [
    ("/..%2Fsecret.txt", (403,)), ("/assets/..%2F..%2Fsecret.txt", (403,)),
    ("/assets/%2e%2e/%2e%2e/secret.txt", (403, 404)),
    ("/%2Fetc%2Fpasswd", (403, 404)), ("/assets/x%00.js", (400,)), ("/assets/" + "a" * 300 + ".js", (400,)),
    ("/templates/..%2F..%2Fsecret.txt", (403,)), ("/docs/..%2Fsecret.txt", (403, 404)),
    ("/extensions/core/..%2F..%2F..%2Fsecret.txt", (403,)), ("/extensions/..%2F..%2Fsecret.txt", (403, 404)),
])
async def test_static_routes_never_serve_a_file_outside_their_folder(web, path, statuses):
    resp = await web.get(path)
    assert resp.status in statuses, (path, resp.status)
    assert "outside the web root" not in await resp.text()


async def test_a_symlink_out_of_the_web_root_is_refused(web, web_root, tmp_path):
    os.symlink(tmp_path / "secret.txt", web_root / "assets" / "leak.txt")
    resp = await web.get("/assets/leak.txt")
    assert resp.status == 403 and "outside the web root" not in await resp.text()


async def test_extensions_lists_the_bundles_scripts_then_custom_nodes(aiohttp_client, tmp_path, web_root):
    package = tmp_path / "base" / "custom_nodes" / "my pack"
    write(package / "__init__.py", "WEB_DIRECTORY = './js'\nNODE_CLASS_MAPPINGS = {}\n")
    write(package / "js" / "main.js", "console.log('custom');")
    write(package / "js" / "core.js", "// a custom package's file")
    settings = Settings(base_directory=tmp_path / "base", front_end_root=web_root)
    client = await aiohttp_client(create_app(settings, build_registry(settings)))
    assert await (await client.get("/api/extensions")).json() == [
        "/extensions/core/groupNode.js", "/extensions/core/load3d/Scene.js",
        "/extensions/my%20pack/core.js", "/extensions/my%20pack/main.js"]
    for url in await (await client.get("/extensions")).json():
        resp = await client.get(url)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/javascript"), url


async def test_without_a_frontend_the_placeholder_page_is_served(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setattr(frontend, "installed_web_root", lambda: None)
    settings = Settings(base_directory=tmp_path)
    client = await aiohttp_client(create_app(settings, build_registry(settings)))
    resp = await client.get("/")
    assert resp.status == 200 and "No web frontend is installed" in await resp.text()
    assert resp.headers["Cache-Control"] == "no-cache"
    assert (await client.get("/assets/index.js")).status == 404
    assert await (await client.get("/extensions")).json() == []


# -- the installed packages ----------------------------------------------------------------------------------------

# comfyui-frontend-package, -workflow-templates and -embedded-docs are dependencies: installed wherever comfyd is.

async def test_the_installed_frontend_and_everything_its_index_loads_are_served(client):
    resp = await client.get("/")
    html = await resp.text()
    assert resp.status == 200 and "<title>ComfyUI</title>" in html
    referenced = re.findall(r'(?:src|href)="\.?/?((?:assets/)[^"]+|[\w.-]+\.css)"', html)
    assert any(r.endswith(".js") for r in referenced)
    for ref in (r for r in referenced if r != "user.css"):  # the user's own stylesheet: 404 until they add one
        asset = await client.get("/" + ref)
        assert asset.status == 200, ref
        if ref.endswith(".js"):
            assert asset.headers["Content-Type"].startswith("text/javascript"), ref
    for url in (await (await client.get("/api/extensions")).json())[:5]:
        assert (await client.get(url)).status == 200, url


async def test_templates_are_served_from_comfyui_workflow_templates(client):
    resp = await client.get("/templates/index.json")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Cache-Control"] == "no-cache"
    index = await resp.json()
    name = index[0]["templates"][0]["name"]
    workflow = await client.get(f"/templates/{name}.json")
    assert workflow.status == 200 and workflow.headers["Content-Type"].startswith("application/json")
    assert "nodes" in await workflow.json()
    thumbnail = await client.get(f"/templates/{name}-1.webp")
    if thumbnail.status == 200:  # not every template has a thumbnail numbered 1
        assert thumbnail.headers["Content-Type"] == "image/webp"
        assert thumbnail.headers["Cache-Control"] == "public, max-age=86400"
    assert (await client.get("/templates/no_such_template.json")).status == 404


async def test_templates_are_looked_up_in_each_bundle_in_order(aiohttp_client, tmp_path, monkeypatch, web_root):
    json_bundle, media_bundle = tmp_path / "json", tmp_path / "media"
    write(json_bundle / "index.json", '[{"templates": []}]')
    write(media_bundle / "index.json", "shadowed")
    write(media_bundle / "t-1.webp", b"RIFF....WEBP")
    monkeypatch.setattr(frontend, "installed_template_roots", lambda: (json_bundle, media_bundle))
    settings = Settings(base_directory=tmp_path / "base", front_end_root=web_root)
    client = await aiohttp_client(create_app(settings, build_registry(settings)))
    assert await (await client.get("/templates/index.json")).json() == [{"templates": []}]
    assert await (await client.get("/templates/t-1.webp")).read() == b"RIFF....WEBP"


async def test_node_docs_are_served_from_comfyui_embedded_docs(client):
    resp = await client.get("/docs/KSampler/en.md")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert "KSampler" in await resp.text()
    assert (await client.get("/docs/NoSuchNode/en.md")).status == 404


async def test_system_stats_reports_the_installed_frontend_and_templates_versions(client):
    system = (await (await client.get("/api/system_stats")).json())["system"]
    for field, dist in (("required_frontend_version", "comfyui-frontend-package"),
                        ("installed_templates_version", "comfyui-workflow-templates"),
                        ("required_templates_version", "comfyui-workflow-templates")):
        try:
            assert system[field] == importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            assert field not in system


async def test_global_subgraphs_is_an_empty_object(client):
    for path in ("/global_subgraphs", "/api/global_subgraphs"):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.json() == {}


# -- --front-end-root and --front-end-version --------------------------------------------------------------------

def test_the_flags_parse_into_settings(tmp_path):
    s = parse_args(["--front-end-version", "Comfy-Org/ComfyUI_frontend@1.27.10", "--front-end-root", str(tmp_path)])
    assert s.front_end_version == "Comfy-Org/ComfyUI_frontend@1.27.10" and s.front_end_root == tmp_path
    assert parse_args([]).front_end_version is None and parse_args([]).front_end_root is None
    with pytest.raises(SystemExit):
        parse_args(["--front-end-version", "1.27.10"])  # no owner/repo


def release(folder, version_text: str):
    write(folder / "index.html", f"<title>{version_text}</title>")
    return folder


def test_front_end_root_must_hold_an_index(tmp_path):
    assert resolve_web_root(tmp_path, None, release(tmp_path / "web", "x")) == (tmp_path / "web").resolve()
    with pytest.raises(FrontendError, match="no index.html"):
        resolve_web_root(tmp_path, None, tmp_path / "empty")


def test_front_end_version_finds_releases_and_pip_targets_on_disk(tmp_path):
    versions = tmp_path / "web_custom_versions" / "Comfy-Org_ComfyUI_frontend"
    old = release(versions / "1.27.10", "old")
    newer = release(versions / "1.30.2" / "comfyui_frontend_package" / "static", "newer")  # pip --target layout
    assert resolve_web_root(tmp_path, "Comfy-Org/ComfyUI_frontend@1.27.10", None) == old
    assert resolve_web_root(tmp_path, "Comfy-Org/ComfyUI_frontend@v1.27.10", None) == old
    assert resolve_web_root(tmp_path, "Comfy-Org/ComfyUI_frontend@1.30.2", None) == newer
    installed_version = frontend._dist_version(frontend.FRONTEND_DIST)
    if installed_version is None or frontend._numeric(installed_version) < (1, 30, 2):
        assert resolve_web_root(tmp_path, "Comfy-Org/ComfyUI_frontend@latest", None) == newer


def test_front_end_version_not_on_disk_says_how_to_get_it(tmp_path):
    with pytest.raises(FrontendError) as err:
        resolve_web_root(tmp_path, "someone/fork@2.0.0", None)
    message = str(err.value)
    assert "does not download" in message and "--front-end-root" in message
    assert str(tmp_path / "web_custom_versions" / "someone_fork" / "2.0.0") in message
    assert "comfyui-frontend-package==2.0.0" in message
    with pytest.raises(FrontendError):
        resolve_web_root(tmp_path, "someone/fork@latest", None)


def test_the_installed_version_and_upstreams_default_mean_the_installed_package(tmp_path):
    version = frontend._dist_version(frontend.FRONTEND_DIST)
    assert resolve_web_root(tmp_path, f"Comfy-Org/ComfyUI_frontend@{version}", None) == frontend.installed_web_root()
    assert resolve_web_root(tmp_path, frontend.DEFAULT_VERSION, None) == frontend.installed_web_root()
    assert resolve_web_root(tmp_path, None, None) == frontend.installed_web_root()


def test_comfyd_exits_with_the_message_when_the_frontend_cannot_be_had(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["--base-directory", str(tmp_path), "--front-end-version", "Comfy-Org/ComfyUI_frontend@0.0.1"])
    assert "comfyd: frontend Comfy-Org/ComfyUI_frontend@0.0.1 is not on disk" in str(exit_.value.code)


def test_frontend_lists_nothing_without_a_web_root():
    assert Frontend(None).extension_scripts([]) == []


# -- /internal ---------------------------------------------------------------------------------------------------

async def test_internal_routes_are_not_mirrored_under_api(client):
    assert (await client.get("/internal/folder_paths")).status == 200
    assert (await client.get("/api/internal/folder_paths")).status == 404


async def test_logs_keep_recent_records_and_feed_subscribers(client):
    ws = await client.ws_connect("/ws?clientId=term")
    await next_message(ws)
    logging.getLogger("comfyd.test").warning("before subscribing")
    resp = await client.patch("/internal/logs/subscribe", json={"clientId": "term", "enabled": True})
    assert resp.status == 200 and await resp.read() == b""
    logging.getLogger("comfyd.test").warning("hello terminal")
    message = await next_message(ws)
    assert message["type"] == "logs" and message["data"]["size"] is None
    (entry,) = message["data"]["entries"]
    assert entry["m"] == "WARNING comfyd.test: hello terminal\n" and "T" in entry["t"]

    raw = await (await client.get("/internal/logs/raw")).json()
    assert [e["m"] for e in raw["entries"][-2:]] == ["WARNING comfyd.test: before subscribing\n",
                                                      "WARNING comfyd.test: hello terminal\n"]
    assert set(raw["size"]) == {"cols", "rows"}
    text = await (await client.get("/internal/logs")).json()
    assert text.endswith(f"{entry['t']} - WARNING comfyd.test: hello terminal\n")

    await client.patch("/internal/logs/subscribe", json={"clientId": "term", "enabled": False})
    logging.getLogger("comfyd.test").warning("not sent")
    with pytest.raises(asyncio.TimeoutError):
        await next_message(ws, timeout=0.3)
    await ws.close()


async def test_logs_are_a_bounded_ring(client):
    from server.keys import LOGS

    for i in range(400):
        logging.getLogger("comfyd.test").warning("line %d", i)
    entries = client.app[LOGS].snapshot()
    assert len(entries) == 300 and entries[-1]["m"].endswith("line 399\n")


@pytest.mark.parametrize("body", [b"", b"[]", b'{"clientId": "x"}', b'{"clientId": 5, "enabled": true}',
                                  b'{"clientId": "", "enabled": true}', b'{"clientId": "x", "enabled": "yes"}'])
async def test_subscribe_refuses_a_bad_body_with_a_clear_400(client, body):
    resp = await client.patch("/internal/logs/subscribe", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["message"]


async def test_folder_paths_lists_every_model_folder(client, tmp_path):
    paths = await (await client.get("/internal/folder_paths")).json()
    assert paths["checkpoints"] == [str(tmp_path / "models" / "checkpoints")]
    assert all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in paths.values())


async def test_files_lists_a_folder_newest_first_without_symlinks(client, tmp_path):
    now = time.time()
    for age, name in ((30, "old.png"), (10, "new.png"), (20, "mid.png")):
        write(tmp_path / "input" / name, png_bytes())
        os.utime(tmp_path / "input" / name, (now - age, now - age))
    (tmp_path / "input" / "sub").mkdir()
    write(tmp_path / "secret.png", png_bytes())
    os.symlink(tmp_path / "secret.png", tmp_path / "input" / "link.png")
    assert await (await client.get("/internal/files/input")).json() == ["new.png", "mid.png", "old.png"]
    assert await (await client.get("/internal/files/temp")).json() == []
    bad = await client.get("/internal/files/models")
    assert bad.status == 400 and await bad.json() == {"error": "Invalid directory type"}


# -- preview frames ----------------------------------------------------------------------------------------------

async def test_previews_carry_metadata_only_for_clients_that_ask(client):
    hub = client.app[HUB]
    plain = await client.ws_connect("/ws?clientId=plain")
    await next_message(plain)
    rich = await client.ws_connect("/ws?clientId=rich")
    await next_message(rich)
    await rich.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    await next_message(rich)
    meta = {"node_id": "3", "display_node_id": "3", "parent_node_id": None, "real_node_id": "3", "prompt_id": "p"}
    for sid in ("plain", "rich"):
        hub.send_bytes(1, struct.pack(">I", 2) + b"\x89PNG....", sid, metadata=dict(meta))
    frame = await next_message(plain)
    assert frame == struct.pack(">II", 1, 2) + b"\x89PNG...."
    frame = await next_message(rich)
    event, length = struct.unpack(">II", frame[:8])
    assert event == 4
    assert json.loads(frame[8:8 + length]) == {**meta, "image_type": "image/png"}
    assert frame[8 + length:] == b"\x89PNG...."
    await plain.close()
    await rich.close()


class TestSamplingPreviews:
    @pytest.fixture
    def settings(self, tmp_path):
        return Settings(base_directory=tmp_path, cpu=True, preview_method="latent2rgb")

    async def test_latent_previews_name_their_node_for_clients_that_ask(self, client, settings):
        write_sd15(settings.base_directory / "models" / "checkpoints" / "tiny.safetensors", seed=0)
        ws = await client.ws_connect("/ws?clientId=meta")
        await next_message(ws)
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        await next_message(ws)
        resp = await client.post("/prompt", json={"prompt": default_workflow("tiny.safetensors", steps=2),
                                                  "client_id": "meta"})
        prompt_id = (await resp.json())["prompt_id"]
        messages = await messages_until(ws, run_finished(prompt_id))
        await ws.close()
        frames = [m for m in messages if isinstance(m, bytes)]
        assert len(frames) == 2
        for frame in frames:
            event, length = struct.unpack(">II", frame[:8])
            assert event == 4
            assert json.loads(frame[8:8 + length]) == {
                "node_id": "3", "display_node_id": "3", "parent_node_id": None, "real_node_id": "3",
                "prompt_id": prompt_id, "image_type": "image/jpeg"}
            assert Image.open(io.BytesIO(frame[8 + length:])).format == "JPEG"


async def test_a_chosen_older_frontend_is_what_the_server_requires(aiohttp_client, tmp_path):
    """--front-end-version picks a release on purpose: /system_stats must not make it warn that it is outdated
    (the frontend compares its own version with required_frontend_version)."""
    release(tmp_path / "web_custom_versions" / "Comfy-Org_ComfyUI_frontend" / "1.27.10", "old")
    settings = Settings(base_directory=tmp_path, front_end_version="Comfy-Org/ComfyUI_frontend@v1.27.10")
    client = await aiohttp_client(create_app(settings))
    system = (await (await client.get("/api/system_stats")).json())["system"]
    assert system["required_frontend_version"] == "1.27.10"
    assert frontend.chosen_version(None) is None and frontend.chosen_version("a/b@latest") is None
