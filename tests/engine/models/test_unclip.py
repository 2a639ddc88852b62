"""SD2 unCLIP: detection (tiny file, released sizes, what must not pass for it), the label embedding's conversion,
the label-embedding vector ComfyUI builds from image embeddings, and SVD checkpoints refused by name."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from engine.models import convert, unclip
from engine.models.clip_vision import ClipVisionOutput
from engine.models.detect import CheckpointError, detect
from engine.models.diffusion import DiffusionModel
from engine.models.load import load_checkpoint
from tests.fixtures import checkpoints as fx
from tests.fixtures import unclip as ufx


def shapes_of(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


@pytest.fixture(scope="module")
def unclip_file(tmp_path_factory):
    return ufx.write_unclip(tmp_path_factory.mktemp("unclip") / "sd21-unclip-h.safetensors", v_pred=True)


def test_tiny_unclip_checkpoint_is_sd2_with_an_image_label_embedding():
    sd = ufx.unclip_state_dict(v_pred=True)
    spec = detect(shapes_of(sd), name="u.safetensors", read=sd.__getitem__)
    assert (spec.family, spec.prediction, spec.unet.unclip) == ("sd2", "v_prediction", True)
    assert spec.unet.adm_in_channels == 2 * ufx.VISION.projection
    assert [te.name for te in spec.text_encoders] == ["h"] and spec.vae is not None


@pytest.mark.parametrize("adm", [1536, 2048], ids=["unclip-l", "unclip-h"])
def test_released_unclip_unets_are_known_by_their_sizes_alone(adm):
    bare = fx.unet_shapes(replace(fx.FULL["sd2"].unet, adm_in_channels=adm), prefix="")
    spec = detect(bare, name="unet.safetensors")
    assert spec.family == "sd2" and spec.unet.unclip and spec.unet.adm_in_channels == adm


def test_sdxl_is_not_taken_for_unclip():
    for shapes in (fx.checkpoint_shapes("sdxl", full=True), fx.checkpoint_shapes("sdxl")):
        spec = detect(shapes, name="xl.safetensors")
        assert spec.family == "sdxl" and not spec.unet.unclip


def test_a_tiny_label_embedding_without_the_unclip_parts_is_not_guessed():
    with pytest.raises(CheckpointError, match="adm_in_channels=48"):
        detect(fx.unet_shapes(ufx.UNET, prefix=""), name="unet.safetensors")


def test_svd_checkpoint_is_refused_as_a_video_model():
    with pytest.raises(CheckpointError, match=r"svd\.safetensors: a Stable Video Diffusion \(video\) model"):
        detect(shapes_of(ufx.svd_state_dict()), name="svd.safetensors")


def test_label_embedding_becomes_the_class_embedding(unclip_file):
    loaded = load_checkpoint(unclip_file, "cpu", torch.float32, load_clip=False, load_vae=False)
    config = loaded.unet.config
    assert config.class_embed_type == "projection" and config.addition_embed_type is None
    assert config.projection_class_embeddings_input_dim == 2 * ufx.VISION.projection
    sd = ufx.unclip_state_dict(v_pred=True)
    for ours, theirs in (("linear_1", "label_emb.0.0"), ("linear_2", "label_emb.0.2")):
        assert torch.equal(getattr(loaded.unet.class_embedding, ours).weight,
                           sd[f"{fx.UNET}{theirs}.weight"].float())
    names = convert.ldm_unet_names(dict(loaded.unet.named_parameters()))
    assert names["label_emb.0.0.weight"] == "class_embedding.linear_1.weight"  # LoRA keys find it too


# -- the label-embedding vector -----------------------------------------------------------------------------------


def alpha_bar(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def sinusoid(level: int, width: int) -> torch.Tensor:
    half = width // 2
    angles = level * torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    return torch.cat([torch.cos(angles), torch.sin(angles)])[None]


def noised(embedding, level, noise):
    a = alpha_bar((level + 1) / 1000) / alpha_bar(0)
    return math.sqrt(a) * embedding + math.sqrt(1 - a) * noise


def entry(embeds: torch.Tensor, strength: float = 1.0, noise_augmentation: float = 0.0) -> dict:
    output = ClipVisionOutput(embeds, torch.zeros(0), torch.zeros(0))
    return {"clip_vision_output": output, "strength": strength, "noise_augmentation": noise_augmentation}


def draws(seed: int, width: int):
    generator = torch.Generator().manual_seed(seed - 10)
    return torch.randn((1, width), generator=generator), torch.randn((1, width), generator=generator)


def test_one_image_gives_its_noised_embedding_and_level_embedding_times_strength():
    embeds = torch.randn(1, 24)
    out = unclip.sd2_adm([entry(embeds, 0.8, 0.3)], seed=99, adm_width=48)
    noise, _ = draws(99, 24)
    expected = torch.cat([noised(embeds, 300, noise), sinusoid(300, 24)], dim=1) * 0.8
    assert out.shape == (1, 48) and torch.allclose(out, expected, atol=1e-5)


def test_several_images_are_summed_then_noised_again_at_the_merge_level():
    first, second = torch.randn(2, 24), torch.randn(1, 24)
    out = unclip.sd2_adm([entry(first, 0.5, 0.2), entry(second, 2.0)], seed=5, adm_width=48)
    noise, merge_noise = draws(5, 24)
    total = (noised(first[:1], 200, noise) + noised(first[1:], 200, noise)) * 0.5 + noised(second, 0, noise) * 2.0
    merge_level = round(999 * 0.05)
    expected = torch.cat([noised(total, merge_level, merge_noise), sinusoid(merge_level, 24)], dim=1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_no_image_gives_zeros_and_a_wrong_width_is_named():
    assert torch.equal(unclip.sd2_adm(None, seed=0, adm_width=48), torch.zeros(1, 48))
    with pytest.raises(ValueError, match="32 wide.*24-wide"):
        unclip.sd2_adm([entry(torch.randn(1, 32))], seed=0, adm_width=48)


def test_the_model_feeds_the_vector_to_the_unet_label_embedding(unclip_file):
    loaded = load_checkpoint(unclip_file, "cpu", torch.float32, load_clip=False, load_vae=False)
    model = DiffusionModel(loaded.unet, "sd2", "v_prediction", 0.18215)
    context = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    embeds = torch.randn(1, 24, generator=torch.Generator().manual_seed(2))
    x, sigma = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)), torch.tensor([2.0])

    def conds(options):
        return model.extra_conds(context, options, x, width=64, height=64, seed=42)

    with_image = conds({"unclip_conditioning": [entry(embeds, 0.9, 0.1)]})
    assert torch.equal(with_image["class_labels"], unclip.sd2_adm([entry(embeds, 0.9, 0.1)], 42, 48))
    without = conds({})
    assert torch.equal(without["class_labels"], torch.zeros(1, 48))
    steered, plain = model.apply_model(x, sigma, **with_image), model.apply_model(x, sigma, **without)
    assert not torch.allclose(steered, plain, atol=1e-4)
    # what apply_model runs: the diffusers UNet with that vector as its class labels
    ms = model.model_sampling
    direct = loaded.unet(ms.calculate_input(sigma, x), ms.timestep(sigma).float(), encoder_hidden_states=context,
                         class_labels=with_image["class_labels"], return_dict=False)[0]
    assert torch.allclose(steered, ms.calculate_denoised(sigma, direct, x), atol=1e-5)
