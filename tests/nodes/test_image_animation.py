"""SaveAnimatedWEBP / SaveAnimatedPNG: declarations, and the files as Pillow decodes them (the parity goldens
animated_* compare every frame, its duration and the loop count with the files upstream wrote)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from engine import folders
from nodes import image_animation
from tests.nodes.test_latent_nodes import assert_matches_capture

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {}}}
EXTRA = {"workflow": {"nodes": []}, "note": "x"}


@pytest.mark.parametrize("name", sorted(image_animation.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name):
    assert_matches_capture(image_animation, name)


@pytest.fixture
def output(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "_active", folders.Folders(tmp_path, input_dir=tmp_path, output_dir=tmp_path / "out",
                                                            temp_dir=tmp_path, user_dir=tmp_path))
    return tmp_path / "out"


def batch() -> torch.Tensor:
    return torch.rand(3, 10, 14, 3, generator=torch.Generator().manual_seed(0))


def decoded(path):
    with Image.open(path) as image:
        shown = [(np.asarray(f.convert("RGB")), f.info.get("duration")) for f in ImageSequence.Iterator(image)]
        return [f for f, _ in shown], [d for _, d in shown], image.info.get("loop"), image


def expected_pixels(images: torch.Tensor) -> list[np.ndarray]:
    return [np.clip(255.0 * i.numpy(), 0, 255).astype(np.uint8) for i in images]


def test_lossless_webp_keeps_every_frame_its_duration_and_the_metadata(output):
    node = image_animation.SaveAnimatedWEBP()
    ui = node.save_images(batch(), 7.0, "clips/anim", True, 80, "default", prompt=PROMPT, extra_pnginfo=EXTRA)
    assert ui == {"ui": {"images": [{"filename": "anim_00001_.webp", "subfolder": "clips", "type": "output"}],
                         "animated": (True,)}}
    frames, durations, loop, image = decoded(output / "clips" / "anim_00001_.webp")
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected_pixels(batch()), strict=True))
    assert durations == [142] * 3 and loop == 0  # int(1000 / 7); loop 0: for ever
    exif = image.getexif()
    assert exif[0x0110] == "prompt:" + json.dumps(PROMPT)
    assert exif[0x010F] == "workflow:" + json.dumps(EXTRA["workflow"]) and exif[0x010E] == 'note:"x"'
    node.save_images(batch()[:1], 7.0, "clips/anim", False, 10, "fastest")
    assert (output / "clips" / "anim_00002_.webp").is_file()  # numbered after the last one


def test_webp_frames_per_file_as_comfyuis_function_takes_them(output):
    ui = image_animation.SaveAnimatedWEBP().save_images(batch(), 6.0, "anim", True, 80, "default", num_frames=2)
    assert [i["filename"] for i in ui["ui"]["images"]] == ["anim_00001_.webp", "anim_00002_.webp"]
    assert [len(decoded(output / i["filename"])[0]) for i in ui["ui"]["images"]] == [2, 1]
    ui = image_animation.SaveAnimatedWEBP().save_images(batch()[:2], 6.0, "anim", True, 80, "default", num_frames=1)
    assert len(ui["ui"]["images"]) == 2 and ui["ui"]["animated"] == (False,)


def test_apng_keeps_every_frame_and_its_duration(output):
    ui = image_animation.SaveAnimatedPNG().save_images(batch(), 3.0, 9, "anim", prompt=PROMPT, extra_pnginfo=EXTRA)
    assert ui["ui"] == {"images": [{"filename": "anim_00001_.png", "subfolder": "", "type": "output"}],
                        "animated": (True,)}
    path = output / "anim_00001_.png"
    frames, durations, loop, _ = decoded(path)
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected_pixels(batch()), strict=True))
    assert durations == [333] * 3 and loop == 0
    data = path.read_bytes()
    # ComfyUI's "comf" chunks, after the image data: the prompt, then each extra_pnginfo entry
    assert data.index(b"comfprompt\0" + json.dumps(PROMPT).encode()) > data.index(b"IDAT")
    assert b"comfworkflow\0" + json.dumps(EXTRA["workflow"]).encode() in data


def test_a_prefix_outside_the_output_folder_is_refused(output):
    with pytest.raises(ValueError, match="outside"):
        image_animation.SaveAnimatedPNG().save_images(batch(), 6.0, 4, "../escape")
