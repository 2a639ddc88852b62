"""CLIP vision: detection and loading of both key layouts, ComfyUI's preprocessing, the encoder outputs, and
unCLIP (SDXL revision) pooled conditioning down to a sampled latent."""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from engine.models import unclip
from engine.models.clip_vision import (CLIP_MEAN, CLIP_STD, ClipVisionOutput, clip_preprocess, detect_clip_vision,
                                       load_clip_vision_file)
from engine.models.detect import CheckpointError
from engine.models.diffusion import DiffusionModel
from tests.fixtures import clip_vision as fx
from tests.fixtures.checkpoints import checkpoint_shapes

MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
STD = torch.tensor(CLIP_STD).view(3, 1, 1)


@pytest.fixture(scope="module")
def hf_file(tmp_path_factory):
    return fx.write_clip_vision(tmp_path_factory.mktemp("clip_vision") / "hf.safetensors")


@pytest.fixture(scope="module")
def vision(hf_file):
    return load_clip_vision_file(hf_file, "cpu", torch.float32)


@pytest.fixture(scope="module")
def file_tensors(hf_file):
    return {k: v.float() for k, v in load_file(hf_file).items()}


# -- detection and loading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, act", [("l", "quick_gelu"), ("h", "gelu"), ("g", "gelu")])
def test_released_sizes_are_read_off_the_shapes(name, act):
    layout = fx.FULL[name]
    spec = detect_clip_vision(fx.vision_shapes(layout))
    assert (spec.layout, spec.width, spec.num_layers, spec.intermediate_size, spec.projection_dim) == \
        ("transformers", layout.width, layout.layers, layout.intermediate, layout.projection)
    assert (spec.patch_size, spec.image_size, spec.hidden_act) == (14, 224, act)


def test_image_size_follows_the_position_count():
    spec = detect_clip_vision(fx.vision_shapes(replace(fx.FULL["l"], image_size=336)))  # ViT-L/14@336
    assert spec.image_size == 336 and spec.patch_size == 14


@pytest.mark.parametrize("prefix", ["visual.", "embedder.model.visual."])
def test_open_clip_layout_is_detected_under_its_prefixes(prefix):
    shapes = {k: tuple(v.shape) for k, v in fx.to_open_clip(fx.vision_state_dict(), prefix).items()}
    spec = detect_clip_vision(shapes)
    assert (spec.layout, spec.prefix) == ("open_clip", prefix)
    assert (spec.width, spec.num_layers, spec.projection_dim, spec.image_size) == \
        (fx.TINY.width, fx.TINY.layers, fx.TINY.projection, fx.TINY.image_size)


def test_other_files_are_refused(tmp_path):
    assert detect_clip_vision(checkpoint_shapes("sdxl")) is None
    no_projection = {k: v for k, v in fx.vision_state_dict().items() if k != fx.PROJECTION}
    save_file(no_projection, str(tmp_path / "bare.safetensors"))
    with pytest.raises(CheckpointError, match="incomplete CLIP vision model"):
        load_clip_vision_file(tmp_path / "bare.safetensors", "cpu", torch.float32)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a CLIP vision model"):
        load_clip_vision_file(tmp_path / "other.safetensors", "cpu", torch.float32)


def test_weights_land_under_their_names(vision, file_tensors):
    model = vision.image_encoder
    assert model.config.num_attention_heads == 16
    state = model.state_dict()
    assert state.keys() == file_tensors.keys()
    for key, value in file_tensors.items():
        assert torch.equal(state[key], value), key
    ids = model.vision_model.embeddings.position_ids
    assert torch.equal(ids.flatten(), torch.arange(fx.TINY.positions))


def test_open_clip_file_holds_the_same_model(vision, tmp_path):
    twin = load_clip_vision_file(fx.write_clip_vision(tmp_path / "oc.safetensors", layout="open_clip"),
                                 "cpu", torch.float32)
    ours, theirs = vision.image_encoder.state_dict(), twin.image_encoder.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_whole_clip_model_file_gives_its_vision_tower(vision, tmp_path, file_tensors):
    whole = dict(fx.vision_state_dict())
    whole.update({"text_model.embeddings.token_embedding.weight": torch.zeros(10, 8),
                  "text_projection.weight": torch.zeros(8, 8), "logit_scale": torch.zeros(()),
                  fx.ROOT + "embeddings.position_ids": torch.arange(fx.TINY.positions)[None]})
    save_file(whole, str(tmp_path / "whole.safetensors"))
    loaded = load_clip_vision_file(tmp_path / "whole.safetensors", "cpu", torch.float32)
    assert loaded.image_encoder.state_dict().keys() == file_tensors.keys()


# -- preprocessing ------------------------------------------------------------------------------------------------


def pil_resize(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[H, W, 3] floats resized per channel by Pillow's bicubic filter (antialiased when shrinking)."""
    channels = [np.asarray(Image.fromarray(image[..., c].numpy(), mode="F").resize((width, height), Image.BICUBIC))
                for c in range(3)]
    return torch.from_numpy(np.stack(channels))


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    return ((pixels * 255).clip(0, 255).round() / 255 - MEAN) / STD


@pytest.mark.parametrize("height, width, crop", [(120, 90, True), (300, 500, True), (120, 90, False)])
def test_preprocessing_matches_an_independent_resize(height, width, crop):
    image = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(height))
    if crop:  # short side to 224, then the middle 224 x 224
        scale = 224 / min(height, width)
        h, w = round(height * scale), round(width * scale)
        top, left = (h - 224) // 2, (w - 224) // 2
        expected = normalise(pil_resize(image[0], w, h)[:, top:top + 224, left:left + 224])
    else:
        expected = normalise(pil_resize(image[0], 224, 224))
    out = clip_preprocess(image, 224, crop=crop)[0]
    assert out.shape == (3, 224, 224)
    step = 1 / 255 / STD  # quantisation may round a value near a .5 boundary the other way
    diff = (out - expected).abs()
    assert (diff <= step + 1e-4).all()
    assert (diff > 1e-4).float().mean() < 0.01


def test_an_image_of_the_right_size_is_only_quantised_and_normalised():
    image = torch.rand(2, 224, 224, 4)  # RGBA: alpha is dropped
    out = clip_preprocess(image, 224)
    expected = np.stack([((np.round(np.clip(255 * img[..., :3].numpy(), 0, 255)) / 255 - np.array(CLIP_MEAN))
                          / np.array(CLIP_STD)).transpose(2, 0, 1) for img in image])
    assert torch.allclose(out, torch.from_numpy(expected).float(), atol=1e-6)


def test_centre_crop_keeps_the_middle_and_none_squashes():
    image = torch.zeros(1, 224, 448, 3)
    image[:, :, 112:336] = 1.0  # white middle square, black sides
    white = normalise(torch.ones(3, 1, 1))
    assert torch.allclose(clip_preprocess(image, 224, crop=True), white.expand(1, 3, 224, 224), atol=1e-5)
    squashed = clip_preprocess(image, 224, crop=False)
    assert torch.allclose(squashed[..., 112], white[..., 0], atol=1e-5)
    assert torch.allclose(squashed[..., 0], normalise(torch.zeros(3, 1, 1))[..., 0], atol=1e-5)


# -- encoding -----------------------------------------------------------------------------------------------------


def test_encode_gives_comfyui_output_fields(vision):
    out = vision.encode(torch.rand(2, 64, 96, 3))
    tokens = fx.TINY.positions
    assert out.image_embeds.shape == (2, fx.TINY.projection)
    assert out.last_hidden_state.shape == out.penultimate_hidden_states.shape == (2, tokens, fx.TINY.width)
    assert out["image_embeds"] is out.image_embeds
    assert not torch.allclose(out.image_embeds[0], out.image_embeds[1])


def test_image_embeds_are_the_projected_normalised_class_token(vision, file_tensors):
    out = vision.encode(torch.rand(1, 64, 64, 3))
    post = torch.nn.functional.layer_norm(out.last_hidden_state[:, 0], (fx.TINY.width,),
                                          file_tensors[fx.ROOT + "post_layernorm.weight"],
                                          file_tensors[fx.ROOT + "post_layernorm.bias"], eps=1e-5)
    assert torch.allclose(out.image_embeds, post @ file_tensors[fx.PROJECTION].t(), atol=1e-5)


def test_penultimate_is_the_output_of_the_second_to_last_layer(vision, tmp_path):
    last = f"{fx.ROOT}encoder.layers.{fx.TINY.layers - 1}."
    shorter = {k: v for k, v in fx.vision_state_dict().items() if not k.startswith(last)}
    save_file(shorter, str(tmp_path / "shorter.safetensors"))
    truncated = load_clip_vision_file(tmp_path / "shorter.safetensors", "cpu", torch.float32)
    image = torch.rand(1, 80, 64, 3)
    full = vision.encode(image)
    assert torch.allclose(full.penultimate_hidden_states, truncated.encode(image).last_hidden_state, atol=1e-5)
    assert not torch.allclose(full.penultimate_hidden_states, full.last_hidden_state, atol=1e-3)


def test_crop_matters_only_for_non_square_images(vision):
    square, wide = torch.rand(1, 64, 64, 3), torch.rand(1, 64, 128, 3)
    assert torch.equal(vision.encode(square, crop=True).image_embeds, vision.encode(square, crop=False).image_embeds)
    assert not torch.allclose(vision.encode(wide, crop=True).image_embeds,
                              vision.encode(wide, crop=False).image_embeds)


# -- unCLIP (revision) --------------------------------------------------------------------------------------------


def alpha_bar(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


@pytest.mark.parametrize("level", [0, 1, 500, 749, 998])
def test_augmentation_schedule_is_the_squared_cosine(level):
    """Uncapped, the cumulative product telescopes to alpha_bar((level + 1) / 1000) / alpha_bar(0)."""
    signal, noise = unclip.augmentation_schedule()
    expected = alpha_bar((level + 1) / 1000) / alpha_bar(0)
    assert signal[level].item() == pytest.approx(math.sqrt(expected), rel=1e-5)
    assert noise[level].item() == pytest.approx(math.sqrt(1 - expected), rel=1e-4)


def test_last_level_beta_is_capped():
    signal, _ = unclip.augmentation_schedule()
    assert signal[999].item() ** 2 == pytest.approx(alpha_bar(0.999) / alpha_bar(0) * 0.001, rel=1e-4)


def test_noise_levels():
    assert [unclip.noise_level(a) for a in (0.0, 0.3, 0.75, 1.0)] == [0, 300, 749, 999]


def entry(embeds: torch.Tensor, strength: float = 1.0, noise_augmentation: float = 0.0) -> dict:
    output = ClipVisionOutput(embeds, torch.zeros(0), torch.zeros(0))
    return {"clip_vision_output": output, "strength": strength, "noise_augmentation": noise_augmentation}


def expected_single(embedding, seed, level, strength):
    noise = torch.randn((1, embedding.shape[-1]), generator=torch.Generator().manual_seed(seed - 10))
    a = alpha_bar((level + 1) / 1000) / alpha_bar(0)
    return (math.sqrt(a) * embedding + math.sqrt(1 - a) * noise) * strength


def test_one_embedding_is_noised_from_seed_minus_ten_and_weighted():
    embeds = torch.randn(1, 48)
    out = unclip.sdxl_pooled([entry(embeds, 0.75, 0.3)], seed=123, width=48)
    assert out.shape == (1, 48)
    assert torch.allclose(out, expected_single(embeds, 123, 300, 0.75), atol=1e-5)


def test_several_embeddings_are_summed_and_noised_again_at_level_zero():
    """ComfyUI reseeds for every embedding (all get the same noise); the merge draws the stream's next numbers."""
    first, second = torch.randn(2, 48), torch.randn(1, 48)
    out = unclip.sdxl_pooled([entry(first, 0.5, 0.2), entry(second, 2.0)], seed=7, width=48)
    generator = torch.Generator().manual_seed(-3)
    _, merge_noise = torch.randn((1, 48), generator=generator), torch.randn((1, 48), generator=generator)
    total = (expected_single(first[:1], 7, 200, 0.5) + expected_single(first[1:], 7, 200, 0.5)
             + expected_single(second, 7, 0, 2.0))
    a = alpha_bar(1 / 1000) / alpha_bar(0)
    assert torch.allclose(out, math.sqrt(a) * total + math.sqrt(1 - a) * merge_noise, atol=1e-5)


def test_embedding_width_must_match_the_pooled_width():
    with pytest.raises(ValueError, match="768 wide"):
        unclip.sdxl_pooled([entry(torch.randn(1, 768))], seed=0, width=1280)


@pytest.mark.parametrize("family, ids", [("sdxl", 6), ("sdxl_refiner", 5)])
def test_unclip_replaces_the_pooled_text(family, ids):
    unet = SimpleNamespace(config=SimpleNamespace(projection_class_embeddings_input_dim=256 * ids + 48,
                                                  in_channels=4))
    model = DiffusionModel(unet, family, "eps", 0.13025)
    embeds = torch.randn(1, 48)
    options = {"pooled_output": torch.ones(1, 48), "unclip_conditioning": [entry(embeds)]}
    conds = model.extra_conds(torch.zeros(1, 77, 8), options, torch.zeros(1, 4, 8, 8), width=64, height=64, seed=9)
    assert torch.allclose(conds["text_embeds"], expected_single(embeds, 9, 0, 1.0), atol=1e-5)
    assert conds["time_ids"].shape == (1, ids)
    plain = model.extra_conds(torch.zeros(1, 77, 8), {"pooled_output": torch.ones(1, 48)}, torch.zeros(1, 4, 8, 8),
                              width=64, height=64, seed=9)
    assert torch.equal(plain["text_embeds"], torch.ones(1, 48))


def test_revision_steers_sdxl_sampling_with_the_sampling_seed(checkpoint_files, vision):
    from engine.models.load import load_checkpoint
    from engine.models.manager import ModelManager
    from engine.sampling.run import ksample

    loaded = load_checkpoint(checkpoint_files["sdxl"], "cpu", torch.float32, load_clip=False, load_vae=False)
    model = DiffusionModel(loaded.unet, "sdxl", "eps", 0.13025, manager=ModelManager(torch.device("cpu")))
    context = torch.randn(1, 77, loaded.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    text_pooled = torch.randn(1, fx.SDXL_POOLED_WIDTH, generator=torch.Generator().manual_seed(2))
    seen = vision.encode(torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3)))
    revision = {"pooled_output": text_pooled, "unclip_conditioning": [entry(seen.image_embeds, 0.75)]}

    def run(options):
        return ksample(model, {"samples": torch.zeros(1, 4, 8, 8)}, seed=42, steps=2, cfg=4.0, sampler_name="euler",
                       scheduler="normal", positive=[[context, options]],
                       negative=[[torch.zeros_like(context), {"pooled_output": torch.zeros_like(text_pooled)}]])

    with_image = run(revision)["samples"]
    by_hand = run({"pooled_output": expected_single(seen.image_embeds, 42, 0, 0.75)})["samples"]
    assert torch.allclose(with_image, by_hand, atol=1e-5)
    assert not torch.allclose(with_image, run({"pooled_output": text_pooled})["samples"], atol=1e-4)
