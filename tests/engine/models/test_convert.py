"""Key mapping at real sizes (on the meta device, no data) and the layouts diffusers cannot express."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from engine.models.convert import PrefixView, unet_config
from engine.models.detect import CheckpointError, detect
from engine.models.load import build_text_encoder, build_unet, build_vae
from tests.fixtures import checkpoints as fx


def meta_tensors(shapes):
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# Published parameter counts: SD1.5 UNet 859.52M, SDXL UNet 2.567B, SD VAE 83.65M, CLIP ViT-L/14 text 123.06M,
# OpenCLIP bigG text (with projection) 694.66M.
UNET_PARAMS = {"sd1": 859_520_964, "sdxl": 2_567_463_684}
VAE_PARAMS = 83_653_863
TEXT_PARAMS = {(12, 768): 123_060_480, (32, 1280): 694_659_840}


@pytest.mark.parametrize("family", sorted(fx.FULL))
def test_released_layouts_map_name_for_name(family):
    """Every LDM tensor of a full-size checkpoint finds a parameter of the right shape, and none is left over."""
    shapes = fx.checkpoint_shapes(family, full=True)
    spec = detect(shapes)
    tensors = meta_tensors(shapes)
    unet = build_unet(spec.unet, tensors)
    vae = build_vae(spec.vae, tensors)
    encoders = [build_text_encoder(te, tensors) for te in spec.text_encoders]
    if family in UNET_PARAMS:
        assert params(unet) == UNET_PARAMS[family]
    assert params(vae) == VAE_PARAMS
    for encoder in encoders:
        key = (encoder.spec.num_layers, encoder.spec.width)
        if key in TEXT_PARAMS:
            assert params(encoder.model) == TEXT_PARAMS[key]


@pytest.mark.parametrize("profile", ["tiny", "small", "full"])
def test_parity_checkpoint_profiles_map(parity_shapes, profile):
    shapes = parity_shapes(profile)
    spec = detect(shapes)
    unet = build_unet(spec.unet, meta_tensors(shapes))
    assert unet.mid_block is None if spec.unet.transformer_depth_middle == -2 else unet.mid_block is not None


def test_prefix_view_renames_without_reading():
    reads = []

    class Source(dict):
        def __getitem__(self, key):
            reads.append(key)
            return super().__getitem__(key)

    view = PrefixView(Source({"a.x": 1, "a.y": 2, "b.x": 3}), "a.", "m.")
    assert sorted(view) == ["m.x", "m.y"] and len(view) == 2 and reads == []
    assert "m.x" in view and "a.x" not in view and "m.z" not in view
    assert view["m.y"] == 2 and reads == ["a.y"]
    with pytest.raises(KeyError):
        view["x"]


def tiny_unet(**changes):
    return replace(detect(fx.checkpoint_shapes("sd1")).unet, **changes)


@pytest.mark.parametrize("changes,message", [
    (dict(num_res_blocks=(1, 2), transformer_depth=(1, 0, 0), transformer_depth_output=(1, 1, 0, 0, 0)),
     "not uniform"),
    (dict(transformer_depth_middle=-1), "middle block without a transformer"),
    (dict(transformer_depth=(1, 2), transformer_depth_output=(1, 1, 2, 2)), "differs from the last level"),
    (dict(num_res_blocks=(2, 2), transformer_depth=(1, 2, 0, 0), transformer_depth_output=(1, 1, 1, 0, 0, 0)),
     "differ within one level"),
    (dict(num_heads=-1, num_head_channels=64), "narrower than one 64-channel"),
])
def test_layouts_diffusers_cannot_express(changes, message):
    with pytest.raises(ValueError, match=message):
        unet_config(tiny_unet(**changes))


def test_unsupported_layout_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match=r"^odd\.ckpt: .*unsupported layout: middle block"):
        build_unet(tiny_unet(transformer_depth_middle=-1), {}, name="odd.ckpt")


def test_asymmetric_depths_build():
    """Input and output sides may differ (the parity checkpoint's tiny UNet has no output transformers)."""
    spec = tiny_unet(transformer_depth_output=(2, 2, 0, 0))
    config = unet_config(spec)
    assert config["up_block_types"] == ["UpBlock2D", "CrossAttnUpBlock2D"]
    assert config["reverse_transformer_layers_per_block"][1] == 2
