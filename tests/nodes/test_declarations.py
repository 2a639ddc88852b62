"""Every built-in node type is declared as upstream ComfyUI 0.3.64 declares it in /object_info (the entries of
tests/data/upstream/object_info.json), field by field, except the differences listed here with their reason."""
from __future__ import annotations

import json

import pytest

from nodes.registry import NodeRegistry
from tests.nodes.test_latent_nodes import COMPARED_FIELDS
from tests.nodes.test_sd3_nodes import use_folders
from tests.upstream import declaration, declarations

# type -> fields that differ on purpose
EXPECTED_DIFFERENCES = {
    # the files of the model folders of the machine the capture was made on
    **{name: {"input"} for name in ("CheckpointLoaderSimple", "CheckpointLoader", "unCLIPCheckpointLoader",
                                    "ImageOnlyCheckpointLoader")},
    # only the text encoder types comfyd runs are offered
    "CLIPLoader": {"input", "description"}, "DualCLIPLoader": {"input", "description"},
}


@pytest.fixture(scope="module")
def registry():
    registry = NodeRegistry()
    registry.load_builtins()
    return registry


@pytest.mark.parametrize("name", sorted(declarations()))
def test_declared_as_upstream(registry, name, tmp_path, monkeypatch):
    use_folders(monkeypatch, tmp_path)  # no model files, as where upstream's declarations were captured
    ours = json.loads(json.dumps(registry.info(name)))
    upstream = declaration(name)
    differing = {field for field in COMPARED_FIELDS
                 if json.dumps(ours.get(field), sort_keys=True) != json.dumps(upstream.get(field), sort_keys=True)}
    assert differing == EXPECTED_DIFFERENCES.get(name, set())
