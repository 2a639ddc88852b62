"""Detection from names and shapes: tiny fixtures, the released models' layouts, and the parity checkpoint's."""
from __future__ import annotations

import pytest
import torch

from engine.models.detect import CheckpointError, detect, detect_text_encoder, detect_vae
from tests.fixtures import checkpoints as fx


def shapes_of(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def per_block(layout):
    """ComfyUI's per-block depth lists for a fixture layout (one entry per res block; nrb + 1 per output level)."""
    depth_in = tuple(d for d in layout.depth for _ in range(layout.num_res_blocks))
    depth_out = tuple(d for d in layout.depth for _ in range(layout.num_res_blocks + 1))
    return depth_in, depth_out


@pytest.mark.parametrize("family", sorted(fx.TINY))
def test_tiny_unet_sizes_come_from_the_keys(family):
    layout = fx.TINY[family].unet
    spec = detect(fx.checkpoint_shapes(family), name="tiny.safetensors")
    depth_in, depth_out = per_block(layout)
    assert spec.family == family
    assert spec.unet.prefix == "model.diffusion_model."
    assert spec.unet.model_channels == layout.model_channels
    assert spec.unet.channel_mult == layout.channel_mult
    assert spec.unet.num_res_blocks == (layout.num_res_blocks,) * len(layout.channel_mult)
    assert spec.unet.transformer_depth == depth_in
    assert spec.unet.transformer_depth_output == depth_out
    assert spec.unet.transformer_depth_middle == layout.middle_depth
    assert spec.unet.context_dim == layout.context_dim
    assert spec.unet.use_linear_in_transformer == layout.linear_proj
    assert spec.unet.adm_in_channels == layout.adm_in_channels
    assert (spec.unet.in_channels, spec.unet.out_channels) == (4, 4)
    assert spec.unet.attention_resolutions == tuple(2 ** i for i, d in enumerate(layout.depth) if d)
    assert spec.prediction == "eps" and not spec.zsnr and not spec.inpaint


@pytest.mark.parametrize("family", sorted(fx.TINY))
def test_tiny_text_encoders_and_vae(family):
    comp = fx.TINY[family]
    spec = detect(fx.checkpoint_shapes(family))
    assert len(spec.text_encoders) == len(comp.text)
    for te, (_, layout, clip) in zip(spec.text_encoders, comp.text):
        assert te.layout == layout
        assert (te.num_layers, te.width, te.intermediate_size) == (clip.layers, clip.width, clip.intermediate)
        assert (te.vocab_size, te.max_positions) == (49408, 77)
        assert te.projection_dim == clip.projection
        assert te.num_heads == 1  # narrower than one 64-wide head
    vae = spec.vae
    assert vae.prefix == "first_stage_model."
    assert (vae.base_channels, vae.channel_mult, vae.num_res_blocks) == (32, (1, 1, 2, 2), 1)
    assert (vae.in_channels, vae.out_channels, vae.latent_channels, vae.downscale) == (3, 3, 4, 8)


def test_encoder_names_and_activations_follow_the_family():
    names = {f: [(te.name, te.hidden_act) for te in detect(fx.checkpoint_shapes(f)).text_encoders] for f in fx.TINY}
    assert names == {
        "sd1": [("l", "quick_gelu")],
        "sd2": [("h", "gelu")],
        "sdxl": [("l", "quick_gelu"), ("g", "gelu")],
        "sdxl_refiner": [("g", "gelu")],
    }


def test_latent_scale_and_head_layout_per_family():
    # ComfyUI: SD15 latent format 0.18215 with 8 heads; SD2 0.18215, SDXL 0.13025, both 64-channel heads
    expected = {"sd1": (0.18215, 8, -1), "sd2": (0.18215, -1, 64), "sdxl": (0.13025, -1, 64),
                "sdxl_refiner": (0.13025, -1, 64)}
    for family, (scale, heads, head_channels) in expected.items():
        spec = detect(fx.checkpoint_shapes(family))
        assert (spec.latent_scale_factor, spec.unet.num_heads, spec.unet.num_head_channels) == \
            (scale, heads, head_channels)


def test_sd2_saved_in_sgm_layout():
    shapes = {k.replace(fx.SD2_CLIP, fx.REFINER_CLIP_G): s for k, s in fx.checkpoint_shapes("sd2").items()}
    spec = detect(shapes)
    assert spec.family == "sd2"
    assert [(te.name, te.prefix) for te in spec.text_encoders] == [("h", fx.REFINER_CLIP_G)]


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_nine_input_channels_is_inpainting(family):
    spec = detect(fx.checkpoint_shapes(family, inpaint=True))
    assert spec.family == family and spec.inpaint and spec.unet.in_channels == 9 and spec.unet.out_channels == 4


def test_sd2_v_prediction_from_the_last_output_norm_bias():
    v = fx.sd2_state_dict(v_pred=True)
    eps = fx.sd2_state_dict()
    assert detect(shapes_of(v), read=v.__getitem__).prediction == "v_prediction"
    assert detect(shapes_of(eps), read=eps.__getitem__).prediction == "eps"
    assert detect(shapes_of(v)).prediction == "eps"  # no tensor access: the weight test cannot run


def test_sd2_inpainting_is_eps_even_with_a_spread_bias():
    sd = fx.fill(fx.checkpoint_shapes("sd2", inpaint=True))
    key = fx.last_output_norm_bias("sd2")
    sd[key] = torch.randn(sd[key].shape) * 0.3
    assert detect(shapes_of(sd), read=sd.__getitem__).prediction == "eps"


def test_v_pred_and_ztsnr_marker_keys_are_honoured():
    shapes = fx.checkpoint_shapes("sdxl")
    assert detect({**shapes, "v_pred": (0,)}).prediction == "v_prediction"
    spec = detect({**shapes, "v_pred": (0,), "ztsnr": (0,)})
    assert spec.prediction == "v_prediction" and spec.zsnr
    assert detect({**fx.checkpoint_shapes("sd1"), "v_pred": (0,)}).prediction == "v_prediction"


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_unet_only_file_is_detected_without_prefix(family):
    shapes = {k.removeprefix(fx.UNET): s for k, s in fx.checkpoint_shapes(family).items() if k.startswith(fx.UNET)}
    spec = detect(shapes)
    assert spec.family == family and spec.unet.prefix == ""
    assert spec.text_encoders == () and spec.vae is None


# --- released model sizes (ComfyUI supported_models / the original inference configs) ---------------------------

FULL_EXPECTED = {
    "sd1": dict(model_channels=320, channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 1, 1, 1, 0, 0),
                context_dim=768, use_linear_in_transformer=False, adm_in_channels=None, heads=[8, 8, 8, 8]),
    "sd2": dict(model_channels=320, channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 1, 1, 1, 0, 0),
                context_dim=1024, use_linear_in_transformer=True, adm_in_channels=None, heads=[5, 10, 20, 20]),
    "sdxl": dict(model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 0, 2, 2, 10, 10),
                 context_dim=2048, use_linear_in_transformer=True, adm_in_channels=2816, heads=[5, 10, 20]),
    "sdxl_refiner": dict(model_channels=384, channel_mult=(1, 2, 4, 4),
                         transformer_depth=(0, 0, 4, 4, 4, 4, 0, 0), context_dim=1280,
                         use_linear_in_transformer=True, adm_in_channels=2560, heads=[6, 12, 24, 24]),
}
FULL_TEXT = {"sd1": [(12, 768, 12)], "sd2": [(24, 1024, 16)], "sdxl": [(12, 768, 12), (32, 1280, 20)],
             "sdxl_refiner": [(32, 1280, 20)]}


@pytest.mark.parametrize("family", sorted(FULL_EXPECTED))
def test_released_model_layouts(family):
    spec = detect(fx.checkpoint_shapes(family, full=True))
    expected = dict(FULL_EXPECTED[family])
    heads = expected.pop("heads")
    assert spec.family == family
    assert {k: getattr(spec.unet, k) for k in expected} == expected
    assert [spec.unet.heads(level) for level in range(len(spec.unet.channel_mult))] == heads
    assert [(te.num_layers, te.width, te.num_heads) for te in spec.text_encoders] == FULL_TEXT[family]
    assert (spec.vae.base_channels, spec.vae.channel_mult, spec.vae.num_res_blocks) == (128, (1, 2, 4, 4), 2)


def test_parity_checkpoint_full_layout_is_sd15(parity_shapes):
    shapes = parity_shapes("full")
    spec = detect(shapes, name="full.safetensors")
    assert spec.family == "sd1" and spec.prediction == "eps"
    assert spec.unet.num_res_blocks == (2, 2, 2, 2)
    assert spec.unet.transformer_depth_output == (1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0)
    assert spec.unet.transformer_depth_middle == 1
    assert {k: getattr(spec.unet, k) for k in FULL_EXPECTED["sd1"] if k != "heads"} == \
        {k: v for k, v in FULL_EXPECTED["sd1"].items() if k != "heads"}
    (clip,) = spec.text_encoders
    assert (clip.name, clip.layout, clip.num_layers, clip.width, clip.intermediate_size) == \
        ("l", "transformers", 12, 768, 3072)


@pytest.mark.parametrize("profile,depth_out,middle", [("tiny", (0, 0), -2), ("small", (1, 1, 1, 1), 1)])
def test_parity_checkpoint_reduced_profiles(parity_shapes, profile, depth_out, middle):
    spec = detect(parity_shapes(profile))
    assert spec.family == "sd1" and spec.unet.model_channels == 320 and spec.unet.context_dim == 768
    assert spec.unet.transformer_depth_output == depth_out
    assert spec.unet.transformer_depth_middle == middle


# --- what is not a Stable Diffusion checkpoint ---------------------------------------------------------------------

def test_no_unet_keys_names_the_file():
    with pytest.raises(CheckpointError, match=r"^flux\.safetensors: not a recognised Stable Diffusion checkpoint"):
        detect({"double_blocks.0.img_attn.norm.key_norm.scale": (128,)}, name="flux.safetensors")


def test_unet_without_cross_attention_is_rejected():
    shapes = {k: s for k, s in fx.checkpoint_shapes("sd1").items() if "attn2" not in k}
    with pytest.raises(CheckpointError, match="m.ckpt: .*incomplete layer"):
        detect(shapes, name="m.ckpt")
    shapes = {k: s for k, s in fx.checkpoint_shapes("sd1").items() if ".1.transformer_blocks" not in k
              and ".1.proj_" not in k and ".1.norm." not in k}
    with pytest.raises(CheckpointError, match="without cross-attention"):
        detect(shapes)


def test_text_encoder_of_another_family_is_rejected():
    shapes = {k: s for k, s in fx.checkpoint_shapes("sd1").items() if not k.startswith("cond_stage_model.")}
    shapes.update({k: s for k, s in fx.checkpoint_shapes("sdxl").items() if k.startswith("conditioner.")})
    with pytest.raises(CheckpointError, match="not where a sd1 checkpoint keeps it"):
        detect(shapes)


def test_text_width_must_match_the_unet_context():
    shapes = fx.checkpoint_shapes("sd1")
    shapes.update(fx.clip_shapes(fx.ClipLayout(48, 2, 96), fx.SD1_CLIP))
    with pytest.raises(CheckpointError, match="expects 32-wide text features, its text encoders give 48"):
        detect(shapes)


def test_vae_and_text_encoder_parts_alone():
    vae = {k.removeprefix(fx.VAE): s for k, s in fx.vae_shapes(fx.VaeLayout(32, (1, 2), 1)).items()}
    assert detect_vae(vae).channel_mult == (1, 2)
    assert detect_vae({"foo": (1,)}) is None
    g = fx.open_clip_shapes(fx.ClipLayout(48, 32, 96, projection=24), "")
    spec = detect_text_encoder(g, "")
    assert (spec.name, spec.layout, spec.projection_dim, spec.projection_key) == ("g", "open_clip", 24,
                                                                                  "text_projection")
    assert detect_text_encoder(fx.clip_shapes(fx.ClipLayout(32, 24, 64), "text_model."), "").name == "h"
    assert detect_text_encoder({"foo": (1,)}, "") is None
