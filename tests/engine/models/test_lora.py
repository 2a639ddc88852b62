"""LoRA files on tiny checkpoints: every key naming lands on the right weight, with ComfyUI's arithmetic, and the
model manager applies, stacks and removes them exactly.

Layer names are taken from the fixture checkpoint's own LDM / OpenCLIP keys; the loaded weight each one means is
found by value (the fixture's values are random, so exactly one loaded parameter equals a file tensor). Expected
changes are computed here from the formula, convolutions checked by running the factors as layers.
"""
from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from engine.models import convert
from engine.models.detect import detect
from engine.models.clip import TextEncoder
from engine.models.diffusion import DiffusionModel
from engine.models.load import load_checkpoint
from engine.models.lora import LoraPatch, apply_lora, load_lora
from engine.models.manager import ModelManager
from tests.fixtures import checkpoints as fx
from tests.fixtures import z_image as zfx

U = fx.UNET
RANK, ALPHA = 2, 1.0  # kohya files carry alpha: changes scale by alpha / rank


@pytest.fixture(scope="module")
def loaded(checkpoint_files):
    """family -> (float32 LoadedCheckpoint without VAE, the file's tensors in float32). Read-only: never patched."""
    memo = {}

    def get(family):
        if family not in memo:
            path = checkpoint_files[family]
            tensors = {k: v.float() for k, v in load_file(path).items() if v.is_floating_point()}
            memo[family] = (load_checkpoint(path, "cpu", torch.float32, load_vae=False), tensors)
        return memo[family]

    return get


def holder(network: torch.nn.Module, value: torch.Tensor) -> str:
    """The name of the one parameter of ``network`` equal to ``value``."""
    found = [n for n, p in network.named_parameters() if p.shape == value.shape and torch.equal(p.float(), value)]
    assert len(found) == 1, found
    return found[0]


def params(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(network.named_parameters())


def encoder(ckpt, name: str):
    return next(te.model for te in ckpt.clip if te.name == name)


def factors(out_shape: tuple, in_shape: tuple, seed: int, rank: int = RANK):
    """(up, down) for a weight (out, in, *kernel): up is (out, rank[, 1, 1]), down (rank, in[, kh, kw])."""
    g = torch.Generator().manual_seed(seed)
    up = torch.randn((out_shape[0], rank, *out_shape[1:]), generator=g) * 0.3
    down = torch.randn((rank, *in_shape), generator=g) * 0.3
    return up, down


def kohya(base: str, up, down, alpha=ALPHA) -> dict:
    return {f"{base}.lora_up.weight": up, f"{base}.lora_down.weight": down, f"{base}.alpha": torch.tensor(alpha)}


def peft(base: str, up, down) -> dict:
    return {f"{base}.lora_B.weight": up, f"{base}.lora_A.weight": down}


def write(tmp_path, tensors: dict, name: str = "lora.safetensors") -> LoraPatch:
    path = tmp_path / name
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path))
    return load_lora(path)


def assert_low_rank(delta, up, down, scale, mid=None):
    """``delta`` acts as the factors do: a matrix product for linears, chained convolutions for convs."""
    if delta.dim() == 2:
        torch.testing.assert_close(delta, scale * up @ down)
        return
    x = torch.randn(1, delta.shape[1], 6, 6, generator=torch.Generator().manual_seed(7))
    chained = F.conv2d(x, down, padding=down.shape[-1] // 2)
    if mid is not None:
        chained = F.conv2d(chained, mid, padding=mid.shape[-1] // 2)
    chained = F.conv2d(chained, up) * scale
    tolerance = 1e-5 * chained.abs().max().item()  # float32 sums in different orders
    torch.testing.assert_close(F.conv2d(x, delta, padding=delta.shape[-1] // 2), chained, rtol=0, atol=tolerance)


# -- the LDM -> diffusers name map --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(fx.TINY))
def test_ldm_unet_names_point_at_the_weights_the_checkpoint_loaded_there(loaded, family):
    ckpt, f = loaded(family)
    mapping = convert.ldm_unet_names(params(ckpt.unet))
    unet_keys = {k[len(U):] for k in f if k.startswith(U)}
    assert set(mapping) == unet_keys
    assert sorted(mapping.values()) == sorted(params(ckpt.unet))  # one to one
    loaded_params = params(ckpt.unet)
    assert all(torch.equal(loaded_params[new], f[U + old]) for old, new in mapping.items())


@pytest.mark.parametrize("family", sorted(fx.FULL))
def test_ldm_unet_names_cover_released_model_sizes(family):
    from diffusers import UNet2DConditionModel

    shapes = fx.checkpoint_shapes(family, full=True)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**convert.unet_config(detect(shapes).unet))
    mapping = convert.ldm_unet_names(params(unet))
    assert set(mapping) == {k[len(U):] for k in shapes if k.startswith(U)}
    assert len(set(mapping.values())) == len(mapping) == len(params(unet))


# -- key formats ----------------------------------------------------------------------------------------------------

SD1_LAYERS = (  # LDM layer, kernel of its down factor
    ("input_blocks.1.1.transformer_blocks.0.attn2.to_k", None),  # linear
    ("input_blocks.1.1.proj_in", 1),  # SD1's 1x1 convolution
    ("input_blocks.1.0.in_layers.2", 3),  # LoCon: 3x3 down, 1x1 up
)


def unet_format(fmt: str, ldm: str, diffusers: str) -> str:
    return {"kohya_ldm": "lora_unet_" + ldm.replace(".", "_"),
            "kohya_diffusers": "lora_unet_" + diffusers.replace(".", "_"),
            "lycoris": "lycoris_" + diffusers.replace(".", "_"),
            "comfy_generic": "diffusion_model." + ldm,
            "peft": "unet." + diffusers}[fmt]


@pytest.mark.parametrize("fmt", ["kohya_ldm", "kohya_diffusers", "lycoris", "comfy_generic", "peft"])
def test_unet_layer_names_in_each_format_give_up_times_down(tmp_path, loaded, fmt):
    ckpt, f = loaded("sd1")
    tensors, expected = {}, {}
    for seed, (ldm, kernel) in enumerate(SD1_LAYERS):
        weight = f[U + ldm + ".weight"]
        name = holder(ckpt.unet, weight)
        in_shape = (weight.shape[1],) + ((kernel, kernel) if kernel else ())
        up, down = factors((weight.shape[0],) + ((1, 1) if kernel else ()), in_shape, seed)
        base = unet_format(fmt, ldm, name.removesuffix(".weight"))
        tensors.update(peft(base, up, down) if fmt == "peft" else kohya(base, up, down))
        expected[name] = (up, down)
    patch = write(tmp_path, tensors)
    deltas = patch.deltas("unet", params(ckpt.unet))
    assert set(deltas) == set(expected)
    scale = 1.0 if fmt == "peft" else ALPHA / RANK  # PEFT files carry no alpha
    for name, (up, down) in expected.items():
        delta = deltas[name]
        assert delta.dtype == torch.float32 and delta.shape == params(ckpt.unet)[name].shape
        assert_low_rank(delta, up, down, scale)
    assert patch.deltas("clip_l", params(encoder(ckpt, "l"))) == {}


def test_diffusers_attention_processor_names(tmp_path, loaded):
    ckpt, f = loaded("sd1")
    layer = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    out_name = holder(ckpt.unet, f[U + "input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.weight"])
    assert out_name == layer + ".to_out.0.weight"  # the name diffusers gives it, on which these keys are built
    up_q, down_q = factors((32,), (32,), 1)
    up_o, down_o = factors((32,), (32,), 2)
    patch = write(tmp_path, {f"unet.{layer}.processor.to_q_lora.up.weight": up_q,
                             f"unet.{layer}.processor.to_q_lora.down.weight": down_q,
                             f"{layer}.processor.to_out_lora.up.weight": up_o,
                             f"{layer}.processor.to_out_lora.down.weight": down_o})
    deltas = patch.deltas("unet", params(ckpt.unet))
    assert set(deltas) == {layer + ".to_q.weight", out_name}
    assert_low_rank(deltas[layer + ".to_q.weight"], up_q, down_q, 1.0)
    assert_low_rank(deltas[out_name], up_o, down_o, 1.0)


def test_locon_mid_factor_is_folded_between_down_and_up(tmp_path, loaded):
    ckpt, f = loaded("sd1")
    ldm = "output_blocks.0.0.in_layers.2"  # 3x3 convolution, 96 -> 64 channels
    weight = f[U + ldm + ".weight"]
    name = holder(ckpt.unet, weight)
    g = torch.Generator().manual_seed(3)
    up = torch.randn(weight.shape[0], 4, 1, 1, generator=g)
    mid = torch.randn(4, 3, 3, 3, generator=g)  # rank-4 output, rank-3 input: the down factor's rank is 3
    down = torch.randn(3, weight.shape[1], 1, 1, generator=g)
    base = "lora_unet_" + ldm.replace(".", "_")
    patch = write(tmp_path, {**kohya(base, up, down, alpha=6.0), base + ".lora_mid.weight": mid})
    delta = patch.deltas("unet", params(ckpt.unet))[name]
    assert_low_rank(delta, up, down, 6.0 / 3, mid=mid)


@pytest.mark.parametrize("axis", ["output", "input"])
def test_dora_rescales_the_updated_weight_to_the_learned_magnitudes(tmp_path, loaded, axis):
    ckpt, f = loaded("sd1")
    ldm = "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj"  # 256 x 32: the two axes differ
    weight = f[U + ldm + ".weight"]
    up, down = factors(weight.shape[:1], weight.shape[1:], 4)
    magnitude = torch.rand((weight.shape[0], 1) if axis == "output" else (1, weight.shape[1])) + 0.5
    base = "lora_unet_" + ldm.replace(".", "_")
    patch = write(tmp_path, {**kohya(base, up, down), base + ".dora_scale": magnitude})
    delta = patch.deltas("unet", params(ckpt.unet))[holder(ckpt.unet, weight)]
    updated = weight + ALPHA / RANK * up @ down
    # ComfyUI's weight_decompose: row norms of the weight before the update, column norms of the updated one
    norm = weight.norm(dim=1, keepdim=True) if axis == "output" else updated.norm(dim=0, keepdim=True)
    torch.testing.assert_close(delta, updated * magnitude / norm - weight)


def test_full_difference_patches_for_weight_and_bias(tmp_path, loaded):
    ckpt, f = loaded("sd1")
    norm = "input_blocks.1.1.norm"
    conv = "input_blocks.1.0.in_layers.2"
    d_weight, d_bias = torch.randn(32), torch.randn(32)
    d_conv = torch.randn_like(f[U + conv + ".weight"])
    patch = write(tmp_path, {f"diffusion_model.{norm}.diff": d_weight, f"diffusion_model.{norm}.diff_b": d_bias,
                             f"lora_unet_{conv.replace('.', '_')}.diff": d_conv})
    deltas = patch.deltas("unet", params(ckpt.unet))
    norm_weight = holder(ckpt.unet, f[U + norm + ".weight"])
    norm_bias = holder(ckpt.unet, f[U + norm + ".bias"])
    conv_weight = holder(ckpt.unet, f[U + conv + ".weight"])
    assert set(deltas) == {norm_weight, norm_bias, conv_weight}
    assert torch.equal(deltas[norm_weight], d_weight)
    assert torch.equal(deltas[norm_bias], d_bias)
    assert torch.equal(deltas[conv_weight], d_conv)


def test_layers_that_do_not_fit_their_weight_are_skipped_with_a_warning(tmp_path, loaded, caplog):
    ckpt, _ = loaded("sd1")
    up, down = factors((32,), (7,), 0)  # to_k takes 32 inputs, not 7
    base = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k"
    patch = write(tmp_path, {**kohya(base, up, down),
                             "diffusion_model.input_blocks.1.1.norm.diff": torch.zeros(5)})
    with caplog.at_level(logging.WARNING, logger="comfyd.lora"):
        assert dict(patch.deltas("unet", params(ckpt.unet))) == {}
    assert sum("not applied" in r.message for r in caplog.records) == 2


def test_sd1_text_encoder_names(tmp_path, loaded):
    ckpt, f = loaded("sd1")
    clip_l = encoder(ckpt, "l")
    te = fx.SD1_CLIP + "encoder.layers."
    q = holder(clip_l, f[te + "0.self_attn.q_proj.weight"])
    fc1 = holder(clip_l, f[te + "1.mlp.fc1.weight"])
    out = holder(clip_l, f[te + "1.self_attn.out_proj.weight"])
    up_q, down_q = factors((32,), (32,), 1)
    up_fc, down_fc = factors((64,), (32,), 2)
    up_o, down_o = factors((32,), (32,), 3)
    patch = write(tmp_path, {**kohya("lora_te_text_model_encoder_layers_0_self_attn_q_proj", up_q, down_q),
                             **peft("text_encoder.text_model.encoder.layers.1.mlp.fc1", up_fc, down_fc),
                             **kohya("lora_te1_text_model_encoder_layers_1_self_attn_out_proj", up_o, down_o)})
    deltas = patch.deltas("clip_l", params(clip_l))
    assert set(deltas) == {q, fc1, out}
    assert_low_rank(deltas[q], up_q, down_q, ALPHA / RANK)
    assert_low_rank(deltas[fc1], up_fc, down_fc, 1.0)
    assert_low_rank(deltas[out], up_o, down_o, ALPHA / RANK)
    assert patch.deltas("unet", params(ckpt.unet)) == {}


def sdxl_text_lora(f, prefix_g: str):
    """kohya / diffusers keys for SDXL's two encoders, and the file tensors of the weights they mean."""
    te_l = fx.SDXL_CLIP_L + "encoder.layers.1."
    blocks_g = prefix_g + "transformer.resblocks."
    up_l, down_l = factors((64,), (32,), 1)
    up_q, down_q = factors((48,), (48,), 2)
    up_fc, down_fc = factors((96,), (48,), 3)
    up_p, down_p = factors((48,), (48,), 4)
    tensors = {**kohya("lora_te1_text_model_encoder_layers_1_mlp_fc1", up_l, down_l),
               **kohya("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", up_q, down_q),
               **peft("text_encoder_2.text_model.encoder.layers.1.mlp.fc1", up_fc, down_fc),
               **kohya("lora_te2_text_projection", up_p, down_p)}
    targets = {"l": [(f[te_l + "mlp.fc1.weight"], up_l, down_l, ALPHA / RANK)],
               "g": [(f[blocks_g + "0.attn.in_proj_weight"][:48], up_q, down_q, ALPHA / RANK),  # OpenCLIP's q rows
                     (f[blocks_g + "1.mlp.c_fc.weight"], up_fc, down_fc, 1.0),
                     (f[prefix_g + "text_projection"].T, up_p, down_p, ALPHA / RANK)]}  # OpenCLIP stores x @ P
    return tensors, targets


def test_sdxl_te1_is_clip_l_and_te2_is_clip_g(tmp_path, loaded):
    ckpt, f = loaded("sdxl")
    tensors, targets = sdxl_text_lora(f, fx.SDXL_CLIP_G)
    patch = write(tmp_path, tensors).for_text_encoders(["l", "g"])
    for name, expected in targets.items():
        network = encoder(ckpt, name)
        deltas = patch.deltas(f"clip_{name}", params(network))
        assert set(deltas) == {holder(network, value) for value, *_ in expected}
        for value, up, down, scale in expected:
            assert_low_rank(deltas[holder(network, value)], up, down, scale)


def test_sdxl_unet_kohya_ldm_names(tmp_path, loaded):
    ckpt, f = loaded("sdxl")
    ldm_layers = ["input_blocks.3.1.transformer_blocks.1.attn1.to_q", "label_emb.0.0", "middle_block.1.proj_out",
                  "output_blocks.0.1.transformer_blocks.0.ff.net.2"]
    tensors, expected = {}, {}
    for seed, ldm in enumerate(ldm_layers):
        weight = f[U + ldm + ".weight"]
        up, down = factors(weight.shape[:1], weight.shape[1:], seed)
        tensors.update(kohya("lora_unet_" + ldm.replace(".", "_"), up, down))
        expected[holder(ckpt.unet, weight)] = (up, down)
    deltas = write(tmp_path, tensors).deltas("unet", params(ckpt.unet))
    assert set(deltas) == set(expected)
    for name, (up, down) in expected.items():
        assert_low_rank(deltas[name], up, down, ALPHA / RANK)


def test_refiner_bigg_answers_to_first_encoder_names_only(tmp_path, loaded):
    ckpt, f = loaded("sdxl_refiner")
    clip_g = encoder(ckpt, "g")
    blocks = fx.REFINER_CLIP_G + "transformer.resblocks."
    up, down = factors((48,), (48,), 5)
    te2_up, te2_down = factors((96,), (48,), 6)
    patch = write(tmp_path, {**kohya("lora_te_text_model_encoder_layers_1_self_attn_out_proj", up, down),
                             **kohya("lora_te2_text_model_encoder_layers_0_mlp_fc1", te2_up, te2_down)})
    view = patch.for_text_encoders({"g"})
    assert view is patch.for_text_encoders(["g"]) and view.for_text_encoders(["l", "g"]) is patch
    out_proj = holder(clip_g, f[blocks + "1.attn.out_proj.weight"])
    deltas = view.deltas("clip_g", params(clip_g))
    assert set(deltas) == {out_proj}
    assert_low_rank(deltas[out_proj], up, down, ALPHA / RANK)
    # next to CLIP-L (SDXL base) the same bigG takes the te2 names instead
    assert set(patch.deltas("clip_g", params(clip_g))) == {holder(clip_g, f[blocks + "0.mlp.c_fc.weight"])}


def test_sd2_clip_h_takes_te_and_te1_names(tmp_path, loaded):
    ckpt, f = loaded("sd2")
    clip_h = encoder(ckpt, "h")
    blocks = fx.SD2_CLIP + "transformer.resblocks."
    up, down = factors((64,), (32,), 1)
    up2, down2 = factors((32,), (32,), 2)
    patch = write(tmp_path, {**kohya("lora_te_text_model_encoder_layers_0_mlp_fc1", up, down),
                             **kohya("lora_te1_text_model_encoder_layers_1_self_attn_v_proj", up2, down2)})
    deltas = patch.for_text_encoders({"h"}).deltas("clip_h", params(clip_h))
    fc1 = holder(clip_h, f[blocks + "0.mlp.c_fc.weight"])
    v_proj = holder(clip_h, f[blocks + "1.attn.in_proj_weight"][64:])  # OpenCLIP's fused q, k, v rows
    assert set(deltas) == {fc1, v_proj}
    assert_low_rank(deltas[fc1], up, down, ALPHA / RANK)
    assert_low_rank(deltas[v_proj], up2, down2, ALPHA / RANK)


def test_pt_files_load_like_safetensors(tmp_path, loaded):
    ckpt, f = loaded("sd1")
    up, down = factors((32,), (32,), 1)
    tensors = kohya("lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_v", up, down)
    torch.save(tensors, tmp_path / "lora.pt")
    from_pt = load_lora(tmp_path / "lora.pt").deltas("unet", params(ckpt.unet))
    from_st = write(tmp_path, tensors).deltas("unet", params(ckpt.unet))
    assert list(from_pt) == list(from_st) and len(from_pt) == 1
    assert all(torch.equal(from_pt[k], from_st[k]) for k in from_pt)


def test_unreadable_file_names_itself(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"not a lora")
    with pytest.raises(ValueError, match="broken.safetensors: not a readable LoRA file"):
        load_lora(tmp_path / "broken.safetensors")


# -- applying through the model manager --------------------------------------------------------------------------


@pytest.fixture
def sd1_models(checkpoint_files):
    """A private half-precision SD1 (MODEL, CLIP) on a CPU manager: these tests patch its weights."""
    ckpt = load_checkpoint(checkpoint_files["sd1"], "cpu", torch.float16, load_vae=False)
    manager = ModelManager(torch.device("cpu"))
    model = DiffusionModel(ckpt.unet, "sd1", "eps", 0.18215, manager=manager, name="sd1")
    clip = TextEncoder({"l": ckpt.clip[0].model}, "sd1", manager=manager)
    return manager, model, clip


def every_layer_lora(tmp_path, model, clip, seed: int, name: str):
    """A kohya LoRA on every attention projection of the UNet and every q_proj of the text encoder."""
    tensors = {}
    for network, prefix, wanted in ((model.unet, "lora_unet_", ".to_q."), (clip.models["l"], "lora_te_", "q_proj")):
        for pname, p in network.named_parameters():
            if wanted in pname and pname.endswith(".weight"):
                full = pname if pname.startswith("text_model.") or prefix == "lora_unet_" else "text_model." + pname
                up, down = factors(p.shape[:1], p.shape[1:], seed)
                seed += 1
                tensors.update(kohya(prefix + full.removesuffix(".weight").replace(".", "_"), up, down))
    return write(tmp_path, tensors, name)


def snapshot(*networks):
    return [{n: p.detach().clone() for n, p in network.named_parameters()} for network in networks]


def expected_weights(base: dict, patches, target: str) -> dict:
    """Base weights plus each patch's change times its strength, in float32 (patches from the formula)."""
    out = {n: w.float() for n, w in base.items()}
    for patch, strength in patches:
        for layer, (name,) in patch.layers(target, base).items():
            entry = patch.entries[layer]
            out[name] += strength * entry.alpha / entry.down.shape[0] * (entry.up @ entry.down)
    return out


def assert_weights(network, expected: dict):
    for name, p in network.named_parameters():
        torch.testing.assert_close(p.float(), expected[name], rtol=0, atol=2e-3)  # half-precision storage


def test_manager_applies_then_restores_base_weights_bit_exactly(tmp_path, sd1_models):
    manager, model, clip = sd1_models
    base_unet, base_clip = snapshot(model.unet, clip.models["l"])
    patch = every_layer_lora(tmp_path, model, clip, 0, "a.safetensors")
    lora_model, lora_clip = apply_lora(model, clip, patch, 1.0, 0.5)
    assert model.patches == [] and clip.patches == []  # the inputs are not touched
    with manager.running(lora_model):
        assert_weights(model.unet, expected_weights(base_unet, [(patch, 1.0)], "unet"))
    with manager.running(lora_clip):
        assert_weights(clip.models["l"], expected_weights(base_clip, [(patch, 0.5)], "clip_l"))
    changed = [n for n, p in model.unet.named_parameters() if not torch.equal(p, base_unet[n])]
    assert changed and all(".to_q." in n for n in changed)
    with manager.running(model), manager.running(clip):
        for network, base in ((model.unet, base_unet), (clip.models["l"], base_clip)):
            assert all(torch.equal(p, base[n]) for n, p in network.named_parameters())


def test_stacked_loras_add_and_negative_strength_reverses(tmp_path, sd1_models):
    manager, model, clip = sd1_models
    (base,) = snapshot(model.unet)
    a = every_layer_lora(tmp_path, model, clip, 0, "a.safetensors")
    b = every_layer_lora(tmp_path, model, clip, 100, "b.safetensors")
    stacked, _ = apply_lora(*apply_lora(model, clip, a, 1.0, 1.0), b, 0.7, 1.0)
    assert [s for _, s in stacked.patches] == [1.0, 0.7]
    with manager.running(stacked):
        assert_weights(model.unet, expected_weights(base, [(a, 1.0), (b, 0.7)], "unet"))
    reversed_a, _ = apply_lora(model, clip, a, -1.0, 0.0)
    with manager.running(reversed_a):
        assert_weights(model.unet, expected_weights(base, [(a, -1.0)], "unet"))
        assert not torch.equal(model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight,
                               base["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"])
    cancelled, _ = apply_lora(*apply_lora(model, clip, a, 1.0, 1.0), a, -1.0, 1.0)
    with manager.running(cancelled):
        assert_weights(model.unet, {n: w.float() for n, w in base.items()})
    with manager.running(model):
        assert all(torch.equal(p, base[n]) for n, p in model.unet.named_parameters())


def test_keys_matching_nothing_are_counted_in_one_warning(tmp_path, sd1_models, caplog):
    _, model, clip = sd1_models
    up, down = factors((32,), (32,), 0)
    patch = write(tmp_path, {**kohya("lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q", up, down),
                             **kohya("lora_te_text_model_encoder_layers_0_mlp_fc2", factors((32,), (64,), 1)[0],
                                     factors((32,), (64,), 1)[1]),
                             **kohya("lora_unet_no_such_layer", up, down),
                             "something_else": torch.zeros(1)})
    with caplog.at_level(logging.WARNING, logger="comfyd.lora"):
        apply_lora(model, clip, patch, 1.0, 1.0)
    warnings = [r.message for r in caplog.records if "lora key not loaded" in r.message]
    assert len(warnings) == 1 and warnings[0].startswith("lora key not loaded: 4 of 10 keys of lora.safetensors")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="comfyd.lora"):
        new_model, new_clip = apply_lora(model, None, patch, 1.0, 1.0)  # the text-encoder keys now count too
    assert new_clip is None and len(new_model.patches) == 1
    assert [r.message for r in caplog.records][0].startswith("lora key not loaded: 7 of 10")


# -- Z-Image: the original layout's fused q/k/v, diffusers' names, Qwen3 text encoder ------------------------------


@pytest.fixture(scope="module")
def z_image(tmp_path_factory):
    """(float32 transformer, float32 Qwen3, their files' tensors in float32 without prefixes). Read-only."""
    from engine.models.load import open_checkpoint
    from engine.models.qwen_text import load_qwen_file
    from engine.models.z_image import load_z_image

    folder = tmp_path_factory.mktemp("z_image")
    z_path, q_path = zfx.write_z_image(folder / "z.safetensors"), zfx.write_qwen(folder / "q.safetensors")
    with open_checkpoint(z_path, torch.device("cpu")) as file:
        _, transformer = load_z_image(file, torch.device("cpu"), torch.float32)
    _, qwen = load_qwen_file(q_path, "cpu", torch.float32)
    tensors = {k.removeprefix("model.diffusion_model."): v.float() for k, v in load_file(z_path).items()}
    tensors.update({"qwen." + k.removeprefix("model."): v.float() for k, v in load_file(q_path).items()})
    return transformer, qwen, tensors


def holders(network: torch.nn.Module, value: torch.Tensor) -> list[str]:
    """The parameters holding ``value``: one, or for a fused q/k/v the three holding its thirds, in row order."""
    if value.dim() == 2 and value.shape[0] == 3 * value.shape[1]:
        return [holder(network, third) for third in value.chunk(3)]
    return [holder(network, value)]


def z_image_expected(network, tensors, factors, scale) -> dict[str, torch.Tensor]:
    """{parameter: its rows of scale * up @ down} for original-layout factors, parameters found by value."""
    out = {}
    for layer, (up, down) in factors.items():
        names = holders(network, tensors[layer + ".weight"])
        out.update(zip(names, (scale * up @ down).chunk(len(names))))
    return out


def renamed(tensors: dict, old: str, new: str, flat: bool = False) -> dict:
    def rename(key):
        layer, dot, suffix = key[len(old):].partition(".lora_")
        return new + (layer.replace(".", "_") if flat else layer) + dot + suffix
    return {rename(k): v for k, v in tensors.items()}


def test_z_image_original_names_point_at_the_weights_loaded_there(z_image):
    from diffusers import ZImageTransformer2DModel

    from engine.models.z_image import detect_z_image, original_names, z_image_config

    transformer, _, tensors = z_image
    mapping = original_names(params(transformer))
    file_keys = {k for k in tensors if not k.startswith("qwen.")}
    assert set(mapping) == file_keys
    assert sorted(n for names in mapping.values() for n in names) == sorted(params(transformer))  # each once
    loaded_params = params(transformer)
    assert all(torch.equal(torch.cat([loaded_params[n] for n in mapping[k]]), tensors[k]) for k in file_keys)
    full = zfx.z_image_shapes(zfx.FULL_Z_IMAGE, prefix="")
    with torch.device("meta"):
        network = ZImageTransformer2DModel(**z_image_config(detect_z_image(full, "full")))
    assert set(original_names(params(network))) == set(full)


Z_IMAGE_FORMATS = {  # name: (LoRA tensors from original-layout factors, scale)
    "comfy_generic": (lambda f: zfx.lora_tensors(f, "comfy"), 1.0),
    "comfy_generic_alpha": (lambda f: zfx.lora_tensors(f, "comfy", alpha=2.0), 2.0 / 4),
    "kohya": (lambda f: zfx.lora_tensors(f, "kohya", alpha=1.0), 1.0 / 4),
    "diffusers": (lambda f: zfx.lora_tensors(f, "diffusers"), 1.0),
    "diffusers_bare": (lambda f: renamed(zfx.lora_tensors(f, "diffusers"), "transformer.", ""), 1.0),
    "diffusers_diffusion_model": (
        lambda f: renamed(zfx.lora_tensors(f, "diffusers"), "transformer.", "diffusion_model."), 1.0),
    "lycoris": (lambda f: renamed(zfx.lora_tensors(f, "diffusers"), "transformer.", "lycoris_", flat=True), 1.0),
}


@pytest.mark.parametrize("fmt", sorted(Z_IMAGE_FORMATS))
def test_z_image_layer_names_in_each_format(tmp_path, z_image, fmt):
    transformer, _, tensors = z_image
    factors = zfx.z_image_lora_factors(seed=1)
    make, scale = Z_IMAGE_FORMATS[fmt]
    patch = write(tmp_path, make(factors))
    deltas = patch.deltas("unet", params(transformer))
    expected = z_image_expected(transformer, tensors, factors, scale)
    assert set(deltas) == set(expected) and len(expected) == 4 * 3 + 5
    for name, change in expected.items():
        torch.testing.assert_close(deltas[name], change, rtol=1e-5, atol=1e-6)
    assert patch.matched_keys("unet", params(transformer)) == set(patch.keys)


def test_z_image_fused_differences_dora_and_misfits(tmp_path, z_image, caplog):
    transformer, _, tensors = z_image
    qkv = tensors["layers.0.attention.qkv.weight"]
    (up, down), = zfx.lora_factors({"qkv.weight": qkv.shape}, ["qkv"], seed=2).values()
    magnitude = torch.rand(qkv.shape[0], 1) + 0.5  # per row of the fused weight
    diff = torch.randn_like(qkv)
    base = "diffusion_model.noise_refiner.0.attention.qkv"
    patch = write(tmp_path, {**peft("diffusion_model.layers.0.attention.qkv", up, down),
                             "diffusion_model.layers.0.attention.qkv.dora_scale": magnitude,
                             "diffusion_model.layers.1.attention.qkv.diff": diff,
                             # misfits: a to_q-sized LoRA under the fused name; per-column DoRA over the parts
                             **peft("diffusion_model.context_refiner.0.attention.qkv", up[:128], down),
                             **peft(base, up, down), base + ".dora_scale": torch.rand(1, qkv.shape[1])})
    with caplog.at_level(logging.WARNING, logger="comfyd.lora"):
        deltas = patch.deltas("unet", params(transformer))
    assert sum("not applied" in r.message for r in caplog.records) == 2
    dora_names = holders(transformer, qkv)
    diff_names = holders(transformer, tensors["layers.1.attention.qkv.weight"])
    assert set(deltas) == set(dora_names + diff_names)
    updated = qkv + up @ down
    expected = updated * magnitude / qkv.norm(dim=1, keepdim=True) - qkv  # row norms of the whole fused weight
    torch.testing.assert_close(torch.cat([deltas[n] for n in dora_names]), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(torch.cat([deltas[n] for n in diff_names]), diff)


def test_qwen_text_encoder_takes_comfy_generic_names(tmp_path, z_image):
    _, qwen, tensors = z_image
    factors = zfx.qwen_lora_factors(seed=3)
    patch = write(tmp_path, zfx.lora_tensors(factors, "qwen"))
    deltas = patch.deltas("clip_qwen3_4b", params(qwen))
    expected = {holder(qwen, tensors[f"qwen.{layer}.weight"]): up @ down for layer, (up, down) in factors.items()}
    assert set(deltas) == set(expected)
    for name, change in expected.items():
        torch.testing.assert_close(deltas[name], change)
    assert patch.deltas("unet", params(z_image[0])) == {}


def test_z_image_manager_applies_then_restores_exactly(tmp_path, z_image, caplog):
    from engine.models.qwen_text import QwenTextEncoder
    from engine.models.z_image import ZImageModel

    transformer, qwen, tensors = z_image
    manager = ModelManager(torch.device("cpu"))
    model = ZImageModel(copy.deepcopy(transformer), manager=manager)
    clip = QwenTextEncoder(copy.deepcopy(qwen), manager=manager)
    base_unet, base_qwen = snapshot(model.unet, clip.models["qwen3_4b"])
    factors, qwen_factors = zfx.z_image_lora_factors(seed=4), zfx.qwen_lora_factors(seed=5)
    tensors_in_file = {**zfx.lora_tensors(factors, "kohya", alpha=2.0), **zfx.lora_tensors(qwen_factors, "qwen"),
                       "unknown.lora_A.weight": torch.zeros(1, 1)}
    patch = write(tmp_path, tensors_in_file)
    with caplog.at_level(logging.WARNING, logger="comfyd.lora"):
        lora_model, lora_clip = apply_lora(model, clip, patch, 0.5, 2.0)
    warnings = [r.message for r in caplog.records if "not loaded" in r.message]
    assert len(warnings) == 1 and f": 1 of {len(tensors_in_file)} keys" in warnings[0]
    assert warnings[0].endswith(": unknown.lora_A.weight")
    with manager.running(lora_model), manager.running(lora_clip):
        expected = z_image_expected(transformer, tensors, factors, 0.5 * 2.0 / 4)
        for name, p in model.unet.named_parameters():
            torch.testing.assert_close(p, base_unet[name] + expected.get(name, 0), rtol=0, atol=1e-6)
        for layer, (up, down) in qwen_factors.items():
            name = holder(qwen, tensors[f"qwen.{layer}.weight"])
            torch.testing.assert_close(clip.models["qwen3_4b"].get_parameter(name), base_qwen[name] + 2.0 * up @ down)
    with manager.running(model), manager.running(clip):
        for network, base in ((model.unet, base_unet), (clip.models["qwen3_4b"], base_qwen)):
            assert all(torch.equal(p, base[n]) for n, p in network.named_parameters())
