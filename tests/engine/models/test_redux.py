"""FLUX.1 Redux's two files: the SigLIP vision tower through the CLIP vision loader (detection, ComfyUI's SigLIP
preprocessing, outputs against transformers' SiglipVisionModel built straight from the file) and the Redux image
encoder through the style-model loader (tokens against the two layers written out)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import SiglipVisionConfig, SiglipVisionModel

from engine.models.clip_vision import ClipVisionOutput, clip_preprocess, detect_clip_vision, load_clip_vision_file
from engine.models.detect import CheckpointError
from engine.models.style_model import ReduxImageEncoder, ReduxSpec, detect_redux, load_style_model_file
from tests.fixtures import redux as fx
from tests.fixtures.checkpoints import save
from tests.fixtures.clip_vision import vision_shapes


@pytest.fixture(scope="module")
def siglip_file(tmp_path_factory):
    return fx.write_siglip_vision(tmp_path_factory.mktemp("siglip") / fx.DEFAULT_NAMES["clip_vision"])


@pytest.fixture(scope="module")
def siglip(siglip_file):
    return load_clip_vision_file(siglip_file, "cpu", torch.float32)


@pytest.fixture(scope="module")
def reference(siglip_file):
    """transformers' SiglipVisionModel (head included) on the file's tensors as they are, configured as ComfyUI's
    SigLIP config reads: 16 heads, tanh GELU, LayerNorm eps 1e-5."""
    config = SiglipVisionConfig(hidden_size=fx.TINY.width, intermediate_size=fx.TINY.intermediate,
                                num_hidden_layers=fx.TINY.layers, num_attention_heads=16, image_size=fx.TINY.image_size,
                                patch_size=fx.TINY.patch, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5)
    model = SiglipVisionModel(config).eval()
    model.load_state_dict({k.removeprefix(fx.ROOT): v.float() for k, v in load_file(siglip_file).items()},
                          strict=True)
    return model


def half_normalise(pixels: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] in 0..1 -> [B, 3, H, W] quantised to 8 bits, at mean 0.5 / std 0.5."""
    return ((pixels * 255).clip(0, 255).round() / 255 * 2 - 1).movedim(-1, 1)


# -- SigLIP vision ------------------------------------------------------------------------------------------------


def test_released_siglip_is_read_off_the_shapes():
    spec = detect_clip_vision(fx.siglip_shapes(fx.FULL))
    assert (spec.layout, spec.width, spec.num_layers, spec.intermediate_size) == ("siglip", 1152, 27, 4304)
    # 729 positions: ComfyUI's clip_vision_siglip_384 (27 patches of 14 read off a 384-pixel square)
    assert (spec.patch_size, spec.image_size, spec.projection_dim) == (14, 384, None)
    assert spec.hidden_act == "gelu_pytorch_tanh" and spec.mean_std == ((0.5,) * 3, (0.5,) * 3)
    assert detect_clip_vision(vision_shapes()).layout == "transformers"  # CLIP: class token, bias-free patches


def test_siglip_loads_without_its_pooling_head(siglip, siglip_file):
    model = siglip.image_encoder
    assert isinstance(model, SiglipVisionModel)
    assert model.config.num_attention_heads == 16 and model.config.layer_norm_eps == 1e-5
    tensors = {k: v.float() for k, v in load_file(siglip_file).items()}
    state = model.state_dict()
    assert state.keys() == {k.removeprefix(fx.ROOT) for k in tensors if not k.startswith(fx.ROOT + "head.")}
    for key, value in state.items():
        assert torch.equal(value, tensors[fx.ROOT + key]), key


def test_incomplete_siglip_is_refused(tmp_path):
    broken = fx.siglip_state_dict()
    del broken[fx.ROOT + "encoder.layers.0.mlp.fc1.weight"]
    with pytest.raises(CheckpointError, match="incomplete CLIP vision model"):
        load_clip_vision_file(save(tmp_path / "broken.safetensors", broken), "cpu", torch.float32)


def test_encode_matches_siglip_vision_model_on_the_same_pixels(siglip, reference):
    image = torch.rand(2, fx.TINY.image_size, fx.TINY.image_size, 3, generator=torch.Generator().manual_seed(1))
    out = siglip.encode(image)
    with torch.no_grad():
        expected = reference(pixel_values=half_normalise(image), output_hidden_states=True)
    tokens = fx.TINY.positions
    assert out.last_hidden_state.shape == (2, tokens, fx.TINY.width) and out.last_hidden_state.dtype == torch.float32
    assert torch.allclose(out.last_hidden_state, expected.last_hidden_state, atol=1e-5)
    # no projection in ComfyUI's SigLIP: its image_embeds are the normalised sequence
    assert torch.equal(out.image_embeds, out.last_hidden_state)
    # the last hidden state is post-LayerNorm; the penultimate one is the second-to-last layer's raw output
    final = F.layer_norm(expected.hidden_states[-1], (fx.TINY.width,), reference.post_layernorm.weight,
                         reference.post_layernorm.bias, eps=1e-5)
    assert torch.allclose(final, expected.last_hidden_state, atol=1e-5)
    assert len(expected.hidden_states) == fx.TINY.layers + 1
    assert torch.allclose(out.penultimate_hidden_states, expected.hidden_states[-2], atol=1e-5)


@pytest.mark.parametrize("crop", [True, False])
def test_other_sizes_are_brought_to_the_siglip_size(siglip, reference, crop):
    image = torch.rand(1, 90, 140, 3, generator=torch.Generator().manual_seed(2))
    pixels = clip_preprocess(image, fx.TINY.image_size, crop=crop, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert pixels.shape == (1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(pixel_values=pixels).last_hidden_state
    assert torch.allclose(siglip.encode(image, crop=crop).last_hidden_state, expected, atol=1e-5)


# -- Redux --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redux_file(tmp_path_factory):
    return fx.write_redux(tmp_path_factory.mktemp("redux") / fx.DEFAULT_NAMES["style_model"])


def hand_tokens(sd: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    """redux_down(silu(redux_up(hidden))) in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    up = hidden.double() @ sd["redux_up.weight"].T + sd["redux_up.bias"]
    return (up * torch.sigmoid(up)) @ sd["redux_down.weight"].T + sd["redux_down.bias"]


def test_redux_layout_is_read_off_the_shapes():
    assert detect_redux(fx.redux_shapes(fx.FULL_REDUX)) == ReduxSpec(width=1152, hidden=3 * 4096, context_dim=4096)
    assert detect_redux(fx.redux_shapes()) == ReduxSpec(fx.TINY.width, 3 * 32, 32)
    assert detect_redux({"style_embedding": (1, 8, 1024)}) is None


def test_redux_tokens_are_the_two_layers_on_the_last_hidden_state(redux_file):
    model = load_style_model_file(redux_file, "cpu")
    assert isinstance(model.adapter, ReduxImageEncoder)
    assert all(p.dtype == torch.float32 for p in model.adapter.parameters())  # bf16 file, float32 as ComfyUI
    gen = torch.Generator().manual_seed(4)
    last, penultimate = torch.randn(2, 2, fx.TINY.positions, fx.TINY.width, generator=gen)
    out = ClipVisionOutput(image_embeds=last, last_hidden_state=last, penultimate_hidden_states=penultimate)
    tokens = model.get_cond(out)
    assert tokens.shape == (2, fx.TINY.positions, fx.TINY_REDUX.context_dim) and tokens.dtype == torch.float32
    expected = hand_tokens({k: v.float() for k, v in load_file(redux_file).items()}, last)
    assert torch.allclose(tokens.double(), expected, atol=1e-5)
    swapped = ClipVisionOutput(image_embeds=last, last_hidden_state=penultimate, penultimate_hidden_states=last)
    assert not torch.allclose(model.get_cond(swapped), tokens)


def test_incomplete_redux_is_refused(tmp_path):
    partial = {k: v for k, v in fx.redux_state_dict().items() if not k.startswith("redux_up.")}
    with pytest.raises(CheckpointError, match="incomplete Redux image encoder"):
        load_style_model_file(save(tmp_path / "partial.safetensors", partial), "cpu")
    no_bias = {k: v for k, v in fx.redux_state_dict().items() if k != "redux_down.bias"}
    with pytest.raises(CheckpointError, match="redux_down.bias"):
        load_style_model_file(save(tmp_path / "no_bias.safetensors", no_bias), "cpu")
