"""Z-Image and Qwen3 text encoder files: sizes read off the key shapes (real sizes, no tensor data)."""
from __future__ import annotations

import pytest

from engine.models.detect import CheckpointError
from engine.models.qwen_text import detect_qwen
from engine.models.z_image import detect_z_image, find_prefix, z_image_config
from tests.fixtures.z_image import FULL_QWEN, FULL_Z_IMAGE, qwen_shapes, z_image_shapes


@pytest.mark.parametrize("prefix", ["model.diffusion_model.", ""])
def test_z_image_turbo_sizes(prefix):
    spec = detect_z_image(z_image_shapes(FULL_Z_IMAGE, prefix=prefix), "z_image_turbo_bf16.safetensors")
    assert (spec.prefix, spec.dim, spec.num_layers, spec.num_refiner_layers, spec.num_heads, spec.caption_dim,
            spec.in_channels) == (prefix, 3840, 30, 2, 30, 2560, 16)
    config = z_image_config(spec)
    assert config["axes_dims"] == [32, 48, 48] and config["n_kv_heads"] == 30


def test_qwen3_4b_sizes():
    spec = detect_qwen(qwen_shapes(FULL_QWEN))
    assert (spec.hidden_size, spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.head_dim,
            spec.intermediate_size, spec.vocab_size) == (2560, 36, 32, 8, 128, 9728, 151936)


def test_other_files_are_not_z_image():
    shapes = qwen_shapes()
    assert find_prefix(shapes) is None and detect_qwen(z_image_shapes()) is None
    with pytest.raises(CheckpointError, match="not a recognised"):
        detect_z_image(shapes, "qwen.safetensors")


def test_qwen_conditioning_layers(tmp_path):
    """Default: the second-to-last layer's output (what Z-Image was trained on); CLIPSetLastLayer -1: the last
    layer's output before the final norm, as ComfyUI's intermediate outputs are."""
    import torch

    from engine.models.qwen_text import QwenTextEncoder, load_qwen_file
    from tests.fixtures.z_image import write_qwen

    _, model = load_qwen_file(write_qwen(tmp_path / "qwen.safetensors"), "cpu", torch.float32)
    encoder = QwenTextEncoder(model)
    tokens = encoder.tokenize("a cat")
    hidden = model(input_ids=torch.tensor([tokens["qwen3"]]), output_hidden_states=True).hidden_states
    assert torch.allclose(encoder.encode_from_tokens(tokens)[0], hidden[-2][0])
    last = encoder.clone()
    last.clip_layer(-1)
    pre_norm = last.encode_from_tokens(tokens)
    assert not torch.allclose(pre_norm, hidden[-1], atol=1e-3)
    assert torch.allclose(model.norm(pre_norm), hidden[-1], atol=1e-5)
    assert encoder.layer_idx == -2  # the clone's setting stays on the clone
