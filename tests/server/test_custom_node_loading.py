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


TABLE_PACK = '''
from pathlib import Path

import folder_paths

HERE = Path(__file__).parent
# what packs do at import: a folder of their own, an extension and a root added to built-in folders
folder_paths.folder_names_and_paths["luts"] = ([str(HERE / "luts")], {".cube"})
folder_paths.folder_names_and_paths["checkpoints"][1].add(".gguf")
folder_paths.folder_names_and_paths["loras"][0].append(str(HERE / "more_loras"))
folder_paths.add_model_folder_path("notes", str(HERE / "notes"))  # a new folder lists every file


class Lists:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {name: (folder_paths.get_filename_list(name),)
                             for name in ("luts", "checkpoints", "loras", "notes")}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    CATEGORY = "pack"


NODE_CLASS_MAPPINGS = {"PackLists": Lists}
'''


async def test_packs_edit_the_folder_table_and_the_loaders_see_it(aiohttp_client, tmp_path):
    pack = tmp_path / "custom_nodes" / "table_pack"
    for folder, name in [("luts", "warm.cube"), ("luts", "readme.txt"), ("more_loras", "extra.safetensors"),
                         ("notes", "put_files_here.txt")]:
        (pack / folder).mkdir(parents=True, exist_ok=True)
        (pack / folder / name).write_bytes(b"x")
    (pack / "__init__.py").write_text(TABLE_PACK)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    for name in ("model.gguf", "model.safetensors"):
        (tmp_path / "models" / "checkpoints" / name).write_bytes(b"x")
    client = await aiohttp_client(create_app(Settings(base_directory=tmp_path)))
    inputs = (await (await client.get("/object_info/PackLists")).json())["PackLists"]["input"]["required"]
    assert {name: spec[0] for name, spec in inputs.items()} == {
        "luts": ["warm.cube"], "checkpoints": ["model.gguf", "model.safetensors"], "loras": ["extra.safetensors"],
        "notes": ["put_files_here.txt"]}
    models = await (await client.get("/models/checkpoints")).json()
    assert models == ["model.gguf", "model.safetensors"]
