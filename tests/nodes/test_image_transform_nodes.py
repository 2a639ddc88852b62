"""Image transform, post-processing and rebatch nodes: upstream's declarations, GetImageSize over the real server (its
outputs and the size text it shows on the node); their images are compared with upstream's in
tests/e2e/test_parity.py."""
from __future__ import annotations

import struct

import pytest
import torch
from PIL import Image

from engine.events import TEXT
from nodes import image_transform, postprocessing, rebatch
from tests.conftest import messages_until, next_message, of_type, run_finished
from tests.nodes.test_latent_nodes import assert_matches_capture


@pytest.mark.parametrize("module, name", [(m, n) for m in (image_transform, postprocessing, rebatch)
                                          for n in m.NODE_CLASS_MAPPINGS])
def test_declaration_matches_upstream(module, name):
    assert_matches_capture(module, name)


async def test_get_image_size_reports_the_size_and_shows_it_on_the_node(client, settings):
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 32), "red").save(settings.base_directory / "input" / "red.png")
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "red.png"}},
              "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 3}},
              "3": {"class_type": "GetImageSize", "inputs": {"image": ["2", 0]}},
              "4": {"class_type": "TestOutput", "inputs": {"value": ["3", 0]}},
              "5": {"class_type": "TestOutput", "inputs": {"value": ["3", 2]}}}
    ws = await client.ws_connect("/ws?clientId=sizes")
    await next_message(ws)
    body = await (await client.post("/prompt", json={"prompt": prompt, "client_id": "sizes"})).json()
    messages = await messages_until(ws, run_finished(body["prompt_id"]))
    await ws.close()
    outputs = {m["node"]: m["output"]["values"] for m in of_type(messages, "executed")}
    assert outputs == {"4": [48], "5": [3]}
    [text] = [m for m in messages if isinstance(m, bytes) and struct.unpack(">I", m[:4])[0] == TEXT]
    (length,) = struct.unpack(">I", text[4:8])
    assert text[8:8 + length] == b"3" and text[8 + length:].decode() == "width: 48, height: 32\n batch size: 3"


def test_rebatching_latents_keeps_sizes_apart_and_masks_with_their_latents():
    small = {"samples": torch.zeros(3, 4, 8, 8), "noise_mask": torch.zeros(1, 1, 64, 64)}
    large = {"samples": torch.ones(2, 4, 16, 8), "batch_index": [7, 9]}
    (out,) = rebatch.RebatchLatents().rebatch([small, large], [2])
    assert [tuple(o["samples"].shape) for o in out] == [(2, 4, 8, 8), (1, 4, 8, 8), (2, 4, 16, 8)]
    assert [o["batch_index"] for o in out] == [[0, 1], [2], [7, 9]]
    assert [o["noise_mask"].shape[0] for o in out[:2]] == [2, 1] and "noise_mask" not in out[2]
