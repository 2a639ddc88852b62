"""SaveLatent / LoadLatent over the real server: a .latent that upstream ComfyUI wrote (tests/data/upstream/files)
loads, and what comfyd saves has upstream's layout and metadata."""
from __future__ import annotations

import json
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nodes import latent_files
from tests.conftest import of_type, run_prompt
from tests.nodes.test_latent_nodes import assert_matches_capture
from tests.nodes.test_sd3_nodes import use_folders
from tests.upstream import DATA

UPSTREAM_LATENT = DATA / "files" / "input_64_encoded.latent"  # input_64.png VAE-encoded by upstream's SaveLatent


def test_declarations_match_upstream(tmp_path, monkeypatch):
    use_folders(monkeypatch, tmp_path)  # no input files, as where upstream's declarations were captured
    for name in latent_files.NODE_CLASS_MAPPINGS:
        assert_matches_capture(latent_files, name)


async def test_an_upstream_latent_loads_and_saves_again_in_upstreams_layout(client, settings):
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    shutil.copy(UPSTREAM_LATENT, settings.base_directory / "input" / "cat.latent")
    listed = (await (await client.get("/object_info/LoadLatent")).json())["LoadLatent"]["input"]["required"]
    assert listed["latent"] == [["cat.latent"]]
    prompt = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "cat.latent"}},
              "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/again"}}}
    _, messages = await run_prompt(client, prompt, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    [executed] = of_type(messages, "executed")
    assert executed["output"] == {"latents": [{"filename": "again_00001_.latent", "subfolder": "latents",
                                               "type": "output"}]}
    saved = settings.base_directory / "output" / "latents" / "again_00001_.latent"
    theirs, ours = load_file(UPSTREAM_LATENT), load_file(saved)
    assert sorted(ours) == sorted(theirs) == ["latent_format_version_0", "latent_tensor"]
    assert torch.equal(ours["latent_tensor"], theirs["latent_tensor"]) and ours["latent_tensor"].shape == (1, 4, 8, 8)
    with safe_open(saved, "pt") as f, safe_open(UPSTREAM_LATENT, "pt") as g:
        assert sorted(f.metadata()) == sorted(g.metadata()) == ["prompt", "workflow"]
        assert json.loads(f.metadata()["prompt"])["2"]["class_type"] == "SaveLatent"
        assert json.loads(f.metadata()["workflow"]) == {"nodes": []}


def test_latents_saved_before_the_version_marker_are_unscaled(tmp_path, monkeypatch):
    save_file({"latent_tensor": torch.full((1, 4, 2, 2), 0.18215)}, str(tmp_path / "old.latent"))
    monkeypatch.setattr(latent_files.folders, "get_annotated_path", lambda name: tmp_path / name)
    (loaded,) = latent_files.LoadLatent().load("old.latent")
    assert torch.allclose(loaded["samples"], torch.ones(1, 4, 2, 2))


def test_a_missing_file_fails_validation(tmp_path, monkeypatch):
    use_folders(monkeypatch, tmp_path)
    assert latent_files.LoadLatent.VALIDATE_INPUTS("nope.latent") == "Invalid latent file: nope.latent"
