"""CLIP vision / unCLIP nodes and ImageScaleToTotalPixels: declarations against upstream's /object_info, and
what they do to their inputs."""
from __future__ import annotations

import copy

import pytest
import torch

from engine import folders
from nodes import clip_vision, image
from tests.nodes.test_latent_nodes import assert_matches_capture, assert_same


@pytest.mark.parametrize("name", sorted(clip_vision.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name, tmp_path, monkeypatch):
    # The capture's models: no CLIP vision file, one checkpoint (only listed, so it need not hold anything).
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "tiny-sd15.safetensors").touch()
    monkeypatch.setattr(folders, "_active", folders.Folders(tmp_path, input_dir=tmp_path, output_dir=tmp_path,
                                                            temp_dir=tmp_path, user_dir=tmp_path))
    assert_matches_capture(clip_vision, name)


def test_image_scale_to_total_pixels_declaration_matches_upstream():
    assert_matches_capture(image, "ImageScaleToTotalPixels")


def test_image_scale_to_total_pixels_keeps_the_aspect():
    # 0.01 MiB of pixels = int(10485.76) = 10485; sqrt(10485 / (64 * 48)) = 1.8474 -> 118.24 x 88.68
    picture = torch.rand(2, 48, 64, 3)
    (out,) = image.ImageScaleToTotalPixels().upscale(picture, "bilinear", 0.01)
    assert out.shape == (2, 89, 118, 3)
    direct = torch.nn.functional.interpolate(picture.movedim(-1, 1), size=(89, 118), mode="bilinear")
    assert torch.allclose(out, direct.movedim(1, -1))


def test_unclip_conditioning_appends_to_each_cond_without_touching_the_input():
    first, second = "first encoding", "second encoding"  # stand-ins: the node only stores them
    conditioning = [[torch.zeros(1, 2, 3), {"pooled_output": torch.ones(1, 3)}],
                    [torch.ones(1, 2, 3), {"unclip_conditioning": [{"clip_vision_output": first, "strength": 1.0,
                                                                    "noise_augmentation": 0.0}]}]]
    before = copy.deepcopy(conditioning)
    node = clip_vision.unCLIPConditioning()
    (out,) = node.apply_adm(conditioning, second, 0.75, 0.25)
    assert_same(conditioning, before)
    added = {"clip_vision_output": second, "strength": 0.75, "noise_augmentation": 0.25}
    assert out[0][1]["unclip_conditioning"] == [added]
    assert torch.equal(out[0][1]["pooled_output"], torch.ones(1, 3))
    assert [e["clip_vision_output"] for e in out[1][1]["unclip_conditioning"]] == [first, second]
    assert out[1][1]["unclip_conditioning"] is not conditioning[1][1]["unclip_conditioning"]
    assert out[0][0] is conditioning[0][0]
    assert node.apply_adm(conditioning, second, 0.0, 0.25)[0] is conditioning  # strength 0: unchanged
