"""FLUX.1 Redux: StyleModelApply with the Redux encoder (SigLIP tokens appended to each conditioning, "multiply"
strength), and FLUX.1 dev with two Redux images through the app, against diffusers' FluxPipeline given the prompt's T5
sequence followed by the Redux tokens."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from engine.models.clip_vision import load_clip_vision_file
from engine.models.style_model import load_style_model_file
from nodes import style_model
from tests.e2e import test_flux
from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import saved
from tests.fixtures import flux as fixture, redux as fx
from tests.nodes.test_style_model import apply, assert_tokens_appended

WIDTH = fx.TINY_REDUX.context_dim


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """(SigLIP vision, Redux) loaded from their fixture files."""
    folder = tmp_path_factory.mktemp("redux")
    vision = load_clip_vision_file(fx.write_siglip_vision(folder / "vision.safetensors"), "cpu", torch.float32)
    return vision, load_style_model_file(fx.write_redux(folder / "redux.safetensors"), "cpu")


def test_apply_appends_every_images_redux_tokens_to_each_cond(encoders):
    vision, redux = encoders
    out = vision.encode(torch.rand(2, 70, 50, 3, generator=torch.Generator().manual_seed(5)))
    tokens = redux.adapter.redux_down(torch.nn.functional.silu(redux.adapter.redux_up(out.last_hidden_state)))
    pooled = torch.ones(1, 5)
    conditioning = [[torch.randn(1, 256, WIDTH), {"pooled_output": pooled, "guidance": 3.5}],
                    [torch.randn(2, 9, WIDTH), {}]]
    result = apply(conditioning, redux, out, 0.6, "multiply")
    images = torch.cat([tokens[0], tokens[1]]) * 0.6  # one token per SigLIP patch, the first image's first
    assert images.shape == (2 * fx.TINY.positions, WIDTH)
    assert_tokens_appended(result, conditioning, images)
    assert result[0][1]["pooled_output"] is pooled
    # attn_bias at 1.0 biases nothing; other biases need attention masks, which comfyd refuses for Redux as well
    plain = apply(conditioning, redux, out, 1.0, "attn_bias")
    assert torch.equal(plain[0][0], apply(conditioning, redux, out, 1.0, "multiply")[0][0])
    with pytest.raises(NotImplementedError, match="attn_bias"):
        apply(conditioning, redux, out, 0.5, "attn_bias")


def test_redux_nodes_keep_their_declarations():
    assert set(style_model.NODE_CLASS_MAPPINGS) == {"StyleModelLoader", "StyleModelApply"}
    spec = style_model.StyleModelApply.INPUT_TYPES()["required"]
    assert spec["strength_type"] == (["multiply", "attn_bias"],) and spec["strength"][1]["max"] == 10.0


# -- through the app ----------------------------------------------------------------------------------------------

IMAGES = ("redux_one.png", "redux_two.png")


def draw_images(folder) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 96, dtype=np.uint8)
    pictures = [np.dstack([np.tile(ramp, (72, 1)), np.tile(ramp[::-1], (72, 1)), np.full((72, 96), 60, np.uint8)]),
                np.full((80, 48, 3), (200, 40, 90), np.uint8)]
    for name, picture in zip(IMAGES, pictures):
        Image.fromarray(picture).save(folder / name)
    return pictures


def redux_workflow(strength: float = 1.0, prefix: str = "redux") -> dict:
    """dev_workflow with two StyleModelApply nodes between the prompt and FluxGuidance, as the
    flux_redux_model_example template chains them."""
    prompt = test_flux.dev_workflow()
    names = fx.DEFAULT_NAMES
    prompt.update({
        "38": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": names["clip_vision"]}},
        "42": {"class_type": "StyleModelLoader", "inputs": {"style_model_name": names["style_model"]}},
        "40": {"class_type": "LoadImage", "inputs": {"image": IMAGES[0]}},
        "47": {"class_type": "LoadImage", "inputs": {"image": IMAGES[1]}},
        "39": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["38", 0], "image": ["40", 0],
                                                            "crop": "center"}},
        "46": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["38", 0], "image": ["47", 0],
                                                            "crop": "center"}},
        "41": {"class_type": "StyleModelApply", "inputs": {
            "conditioning": ["4", 0], "style_model": ["42", 0], "clip_vision_output": ["39", 0],
            "strength": strength, "strength_type": "multiply"}},
        "45": {"class_type": "StyleModelApply", "inputs": {
            "conditioning": ["41", 0], "style_model": ["42", 0], "clip_vision_output": ["46", 0],
            "strength": strength, "strength_type": "multiply"}},
    })
    prompt["5"]["inputs"]["conditioning"] = ["45", 0]
    prompt["9"]["inputs"]["filename_prefix"] = prefix
    return prompt


async def test_flux_redux_matches_diffusers_on_the_extended_sequence(client, settings):
    models = settings.base_directory / "models"
    files = fixture.install(models)
    for folder, name, writer in (("clip_vision", fx.DEFAULT_NAMES["clip_vision"], fx.write_siglip_vision),
                                 ("style_models", fx.DEFAULT_NAMES["style_model"], fx.write_redux)):
        (models / folder).mkdir(parents=True, exist_ok=True)
        files[folder] = writer(models / folder / name)
    pictures = draw_images(settings.base_directory / "input")

    image = saved(settings, await run_ok(client, redux_workflow()))[0].astype(np.float32) / 255
    # The Redux tokens of both images (centre-cropped), as the engine's own encoders make them, after the T5 sequence.
    vision = load_clip_vision_file(files["clip_vision"], "cpu", torch.float32)
    redux = load_style_model_file(files["style_models"], "cpu")
    tokens = [redux.get_cond(vision.encode(torch.from_numpy(p).float()[None] / 255)) for p in pictures]
    sequence, pooled = test_flux.reference_embeddings(files)
    extended = torch.cat([sequence, *tokens], dim=1)
    assert extended.shape[1] == test_flux.T5_LENGTH + 2 * fx.TINY.positions
    sigmas = test_flux.simple_schedule(0.5 + 0.65 / 3840 * (16 - 256))
    with mock.patch.object(test_flux, "reference_embeddings", lambda _: (extended, pooled)):
        test_flux.assert_close_to(image, test_flux.diffusers_reference(files, files["dev"], sigmas, test_flux.GUIDANCE))

    # strength 0 appends zero tokens: the images' contents are what changes the picture
    plain = saved(settings, await run_ok(client, redux_workflow(0.0, "plain")))[0].astype(np.float32) / 255
    assert np.abs(plain - image).mean() > 0.5 / 255
