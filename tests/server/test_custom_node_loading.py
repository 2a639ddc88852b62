"""Loading custom node packs as ComfyUI does: prestartup scripts first, model folders and PromptServer.instance
ready while packs import, in the server and in the embedded client alike."""
from __future__ import annotations

import comfyd
from engine import Settings
from server.app import create_app

PRESTARTUP = "from pathlib import Path\nPath(__file__).with_name('prestartup.ran').write_text('yes')\n"
PACK = '''
from pathlib import Path

import folder_paths
from server import PromptServer

if not Path(__file__).with_name("prestartup.ran").is_file():
    raise RuntimeError("the prestartup script did not run first")
CHECKPOINTS = folder_paths.get_filename_list("checkpoints")  # at import, as many packs do


@PromptServer.instance.routes.get("/early/checkpoints")
async def checkpoints(request):
    from aiohttp import web
    return web.json_response(CHECKPOINTS)


class EarlyNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt": (CHECKPOINTS,)}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "early"

    def run(self, ckpt):
        return {}


NODE_CLASS_MAPPINGS = {"EarlyNode": EarlyNode}
'''


def write_packs(base):
    pack = base / "custom_nodes" / "early_pack"
    pack.mkdir(parents=True)
    (pack / "prestartup_script.py").write_text(PRESTARTUP)
    (pack / "__init__.py").write_text(PACK)
    failing = base / "custom_nodes" / "failing_prestartup"
    failing.mkdir()
    (failing / "prestartup_script.py").write_text("raise RuntimeError('prestartup fails')\n")
    (failing / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / "m.safetensors").write_bytes(b"x")


async def test_packs_find_folders_and_the_server_at_import(aiohttp_client, tmp_path):
    write_packs(tmp_path)
    client = await aiohttp_client(create_app(Settings(base_directory=tmp_path)))
    info = await (await client.get("/object_info/EarlyNode")).json()
    assert info["EarlyNode"]["input"]["required"]["ckpt"] == [["m.safetensors"]]
    assert await (await client.get("/api/early/checkpoints")).json() == ["m.safetensors"]
    logs = await (await client.get("/internal/logs")).json()
    assert "prestartup script of custom node package failing_prestartup failed" in logs


async def test_the_embedded_client_loads_the_same_packs(tmp_path):
    write_packs(tmp_path)
    async with comfyd.Comfy(tmp_path, cpu=True) as client:
        assert {p.name: p.error for p in client.engine.registry.packages} == {"early_pack": None,
                                                                              "failing_prestartup": None}
        outputs = await client.queue_prompt({"1": {"class_type": "EarlyNode", "inputs": {"ckpt": "m.safetensors"}}})
    assert outputs == {}
