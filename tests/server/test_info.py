"""Descriptions of the server: /object_info, /system_stats, /features, models, embeddings, extensions, CLI."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


from engine import Settings
from server.app import build_registry, create_app
from tests.upstream import declaration


OBJECT_INFO_KEYS = ["input", "input_order", "output", "output_is_list", "output_name", "name", "display_name",
                    "description", "python_module", "category", "output_node"]


async def test_object_info_shape(client):
    info = await (await client.get("/object_info")).json()
    add = info["TestAdd"]
    assert list(add)[:len(OBJECT_INFO_KEYS)] == OBJECT_INFO_KEYS
    assert add["input"] == {"required": {"a": ["INT", {}], "b": ["INT", {"default": 0}]},
                            "hidden": {"unique_id": "UNIQUE_ID"}}
    assert add["input_order"] == {"required": ["a", "b"], "hidden": ["unique_id"]}
    assert add["output"] == ["INT"] and add["output_name"] == ["sum"] and add["output_is_list"] == [False]
    assert add["display_name"] == "Add (test)" and add["description"] == "Adds two integers."
    assert add["category"] == "tests" and add["output_node"] is False and add["python_module"] == "tests"
    assert info["TestOutput"]["output_node"] is True
    assert info["TestListOutput"]["output_is_list"] == [True]
    assert info["PrimitiveInt"]["input"] == {"required": {"value": ["INT", {
        "min": -9223372036854775807, "max": 9223372036854775807, "control_after_generate": True}]}}

    single = await (await client.get("/object_info/TestAdd")).json()
    assert single == {"TestAdd": add}
    assert await (await client.get("/object_info/NoSuchNode")).json() == {}


async def test_primitives_match_upstream_object_info(client):
    ours = await (await client.get("/object_info")).json()
    for name in ("PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean"):
        for key in ("input", "input_order", "output", "output_is_list", "output_name", "display_name", "category"):
            assert ours[name][key] == declaration(name)[key], (name, key)


async def test_system_stats_and_features(client, settings):
    stats = await (await client.get("/system_stats")).json()
    system = stats["system"]
    for key in ("os", "ram_total", "ram_free", "python_version", "pytorch_version", "embedded_python", "argv",
                "comfyui_version"):
        assert key in system, key
    assert system["ram_total"] > system["ram_free"] > 0
    device = stats["devices"][0]
    assert set(device) >= {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"}
    assert device["type"] == "cpu" and device["vram_total"] == system["ram_total"]
    assert await (await client.get("/features")).json() == {"supports_preview_metadata": True,
                                                            "max_upload_size": 100 * 1024 * 1024}


async def test_models_embeddings_listing(client, settings):
    models = settings.base_directory / "models"
    (models / "checkpoints" / "sub").mkdir(parents=True, exist_ok=True)
    (models / "checkpoints" / "a.safetensors").write_bytes(b"x")
    (models / "checkpoints" / "sub" / "b.ckpt").write_bytes(b"x")
    (models / "checkpoints" / "notes.txt").write_text("ignored")
    (models / "embeddings").mkdir(parents=True, exist_ok=True)
    (models / "embeddings" / "style.pt").write_bytes(b"x")

    names = await (await client.get("/models")).json()
    assert names[:4] == ["checkpoints", "configs", "loras", "vae"] and "upscale_models" in names
    assert await (await client.get("/models/checkpoints")).json() == ["a.safetensors", "sub/b.ckpt"]
    assert (await client.get("/models/nosuchfolder")).status == 404
    assert await (await client.get("/embeddings")).json() == ["style"]
    experiment = await (await client.get("/experiment/models")).json()
    assert {"name": "checkpoints", "folders": [str(models / "checkpoints")]} in experiment
    listed = await (await client.get("/experiment/models/checkpoints")).json()
    assert [(m["name"], m["pathIndex"], m["size"]) for m in listed] == [("a.safetensors", 0, 1), ("sub/b.ckpt", 0, 1)]
    assert all(m["modified"] > 0 and m["created"] > 0 for m in listed)


async def test_extra_model_paths_yaml(aiohttp_client, tmp_path):
    other = tmp_path / "comfy_elsewhere"
    (other / "models" / "checkpoints").mkdir(parents=True)
    (other / "models" / "checkpoints" / "shared.safetensors").write_bytes(b"x")
    (other / "loras").mkdir(parents=True)
    (other / "loras" / "l.safetensors").write_bytes(b"x")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"comfyui:\n  base_path: {other}\n  checkpoints: models/checkpoints/\n  loras: |\n    loras\n")
    settings = Settings(base_directory=tmp_path / "base", extra_model_paths_config=(config,))
    client = await aiohttp_client(create_app(settings, build_registry(settings)))
    assert await (await client.get("/models/checkpoints")).json() == ["shared.safetensors"]
    assert await (await client.get("/models/loras")).json() == ["l.safetensors"]


CUSTOM_PACKAGE = '''
class Shout:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "custom"
    def run(self, text):
        return (text.upper(),)

NODE_CLASS_MAPPINGS = {"Shout": Shout}
NODE_DISPLAY_NAME_MAPPINGS = {"Shout": "Shout!"}
WEB_DIRECTORY = "./js"
'''


async def test_custom_nodes_load_and_broken_ones_are_skipped(aiohttp_client, tmp_path):
    package = tmp_path / "custom_nodes" / "shouting"
    (package / "js" / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(CUSTOM_PACKAGE)
    (package / "js" / "main.js").write_text("console.log('shout');")
    (package / "js" / "sub" / "extra.js").write_text("// more")
    broken = tmp_path / "custom_nodes" / "broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('this package is broken')")
    settings = Settings(base_directory=tmp_path)
    registry = build_registry(settings)
    assert [(p.name, p.error is None) for p in registry.packages] == [("broken", False), ("shouting", True)]
    client = await aiohttp_client(create_app(settings, registry))

    info = await (await client.get("/object_info/Shout")).json()
    assert info["Shout"]["display_name"] == "Shout!"
    assert info["Shout"]["python_module"] == "custom_nodes.shouting"
    extensions = await (await client.get("/extensions")).json()
    custom = [e for e in extensions if not e.startswith("/extensions/core/")]  # the rest: the frontend bundle's
    assert custom == ["/extensions/shouting/main.js", "/extensions/shouting/sub/extra.js"]
    resp = await client.get("/extensions/shouting/main.js")
    assert resp.status == 200 and "shout" in await resp.text()
    assert (await client.get("/extensions/shouting/../__init__.py")).status in (403, 404)


async def test_origin_check_blocks_cross_origin_posts_to_loopback(client):
    host = f"127.0.0.1:{client.port}"
    ok = await client.post("/free", json={}, headers={"Host": host, "Origin": f"http://{host}"})
    assert ok.status == 200
    evil = await client.post("/prompt", json={}, headers={"Host": host, "Origin": "http://evil.example"})
    assert evil.status == 403
    other_port = await client.post("/free", json={}, headers={"Host": host, "Origin": "http://127.0.0.1:1"})
    assert other_port.status == 403


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_on_the_given_port(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "server", "--listen", "127.0.0.1", "--port", str(port), "--cpu",
                             "--base-directory", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/system_stats", timeout=2) as resp:
                    stats = json.loads(resp.read())
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(proc.stdout.read().decode(errors="replace"))
                time.sleep(0.2)
        assert "--port" in stats["system"]["argv"]
        for folder in ("models/checkpoints", "input", "output", "temp", "user"):
            assert (tmp_path / folder).is_dir(), folder
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_root_i18n_and_templates(client):
    root = await client.get("/")
    assert root.status == 200 and root.headers["Cache-Control"] == "no-cache"
    assert "text/html" in root.headers["Content-Type"]
    assert await (await client.get("/api/i18n")).json() == {}
    assert await (await client.get("/api/workflow_templates")).json() == {}


COMPAT_PACKAGE = '''
import folder_paths
import comfy.utils
import comfy.model_management
import comfy.samplers
import nodes
from server import PromptServer
from aiohttp import web


@PromptServer.instance.routes.get("/compat/hello")
async def hello(request):
    return web.json_response({"hello": folder_paths.get_filename_list("checkpoints")})


class CompatNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt": (folder_paths.get_filename_list("checkpoints"),),
                             "sampler": (comfy.samplers.KSampler.SAMPLERS,),
                             "size": ("INT", {"default": 64, "max": nodes.MAX_RESOLUTION})}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self, ckpt, sampler, size):
        bar = comfy.utils.ProgressBar(2)
        bar.update(1)
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update(1)
        PromptServer.instance.send_sync("compat.event", {"ckpt": ckpt})
        PromptServer.instance.send_progress_text("loaded " + ckpt, "1")
        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt)
        return {"ui": {"text": [path.endswith(ckpt), "KSampler" in nodes.NODE_CLASS_MAPPINGS,
                                folder_paths.get_output_directory() != ""]}}

NODE_CLASS_MAPPINGS = {"CompatNode": CompatNode}
'''


async def test_custom_nodes_written_for_comfyui_import_its_modules(aiohttp_client, tmp_path):
    from tests.conftest import of_type, run_prompt

    (tmp_path / "custom_nodes" / "compat_pack").mkdir(parents=True)
    (tmp_path / "custom_nodes" / "compat_pack" / "__init__.py").write_text(COMPAT_PACKAGE)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "m.safetensors").write_bytes(b"x")
    settings = Settings(base_directory=tmp_path)
    client = await aiohttp_client(create_app(settings))
    registry = client.app[__import__("server.keys", fromlist=["ENGINE"]).ENGINE].registry
    assert [p.error for p in registry.packages] == [None]
    assert await (await client.get("/api/compat/hello")).json() == {"hello": ["m.safetensors"]}
    prompt = {"1": {"class_type": "CompatNode", "inputs": {"ckpt": "m.safetensors", "sampler": "euler", "size": 64}}}
    prompt_id, messages = await run_prompt(client, prompt)
    assert of_type(messages, "compat.event") == [{"ckpt": "m.safetensors"}]
    assert [m for m in messages if isinstance(m, bytes)] == [b"\x00\x00\x00\x03\x00\x00\x00\x011loaded m.safetensors"]
    assert [p["value"] for p in of_type(messages, "progress")] == [1, 2]
    assert of_type(messages, "executed")[0]["output"] == {"text": [True, True, True]}


async def test_custom_node_load_messages_reach_the_terminal_log(aiohttp_client, tmp_path):
    """Custom nodes load while the app is built, before it serves: what they log then (and their failures) is in
    /internal/logs for the frontend's terminal panel, as upstream's captured stdout is."""
    talking = tmp_path / "custom_nodes" / "talking"
    talking.mkdir(parents=True)
    (talking / "__init__.py").write_text("import logging\nlogging.getLogger('talking').warning('talking pack ready')\n"
                                         "NODE_CLASS_MAPPINGS = {}\n")
    broken = tmp_path / "custom_nodes" / "broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('this package is broken')")
    client = await aiohttp_client(create_app(Settings(base_directory=tmp_path)))
    text = await (await client.get("/internal/logs")).json()
    assert "talking pack ready" in text
    assert "custom node package broken failed to load" in text
