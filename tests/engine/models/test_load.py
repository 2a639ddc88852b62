"""Loading tiny checkpoints: weights land where the original names say, and every part runs."""
from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from safetensors.torch import load_file, save_file

from engine.models.detect import CheckpointError
from engine.models.load import load_checkpoint, load_clip_file, load_unet_file, load_vae_file
from tests.fixtures import checkpoints as fx

U, V = fx.UNET, fx.VAE


@pytest.fixture(scope="module")
def loaded(checkpoint_files):
    """family -> (LoadedCheckpoint in float32, the file's tensors in float32)."""
    out = {}
    for family, path in checkpoint_files.items():
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
        out[family] = (load_checkpoint(path, "cpu", torch.float32), tensors)
    return out


def text_model(encoder):
    model = encoder.model
    return getattr(model, "text_model", model)  # transformers >= 5.6 flattened CLIPTextModel


def assert_same(a, b):
    assert a.shape == b.shape
    assert torch.equal(a, b)


def test_sd1_unet_weights_sit_under_their_diffusers_names(loaded):
    ckpt, f = loaded["sd1"]
    unet = ckpt.unet
    assert_same(unet.time_embedding.linear_2.bias, f[U + "time_embed.2.bias"])
    assert_same(unet.conv_in.weight, f[U + "input_blocks.0.0.weight"])
    block = unet.down_blocks[0].attentions[0].transformer_blocks[0]
    assert_same(block.attn2.to_k.weight, f[U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"])
    assert_same(block.ff.net[0].proj.weight, f[U + "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight"])
    assert_same(unet.down_blocks[0].downsamplers[0].conv.weight, f[U + "input_blocks.2.0.op.weight"])
    assert_same(unet.down_blocks[1].resnets[0].conv_shortcut.weight, f[U + "input_blocks.3.0.skip_connection.weight"])
    assert_same(unet.mid_block.attentions[0].proj_in.weight, f[U + "middle_block.1.proj_in.weight"])
    assert_same(unet.mid_block.resnets[1].conv1.weight, f[U + "middle_block.2.in_layers.2.weight"])
    assert_same(unet.up_blocks[0].upsamplers[0].conv.weight, f[U + "output_blocks.1.1.conv.weight"])
    assert_same(unet.up_blocks[1].resnets[1].time_emb_proj.weight, f[U + "output_blocks.3.0.emb_layers.1.weight"])
    assert_same(unet.up_blocks[1].attentions[1].proj_out.weight, f[U + "output_blocks.3.1.proj_out.weight"])
    assert_same(unet.conv_norm_out.weight, f[U + "out.0.weight"])
    assert_same(unet.conv_out.bias, f[U + "out.2.bias"])


def test_vae_weights(loaded):
    vae, f = loaded["sd1"][0].vae, loaded["sd1"][1]
    assert_same(vae.decoder.up_blocks[3].resnets[1].conv2.weight, f[V + "decoder.up.0.block.1.conv2.weight"])
    assert_same(vae.decoder.up_blocks[0].upsamplers[0].conv.bias, f[V + "decoder.up.3.upsample.conv.bias"])
    assert_same(vae.encoder.down_blocks[2].resnets[0].conv_shortcut.weight,
                f[V + "encoder.down.2.block.0.nin_shortcut.weight"])
    assert_same(vae.encoder.mid_block.attentions[0].to_q.weight, f[V + "encoder.mid.attn_1.q.weight"][:, :, 0, 0])
    assert_same(vae.decoder.mid_block.attentions[0].group_norm.bias, f[V + "decoder.mid.attn_1.norm.bias"])
    assert_same(vae.post_quant_conv.bias, f[V + "post_quant_conv.bias"])


def test_clip_l_weights(loaded):
    (clip,), f = loaded["sd1"][0].clip, loaded["sd1"][1]
    model = text_model(clip)
    assert_same(model.encoder.layers[1].mlp.fc2.weight, f[fx.SD1_CLIP + "encoder.layers.1.mlp.fc2.weight"])
    assert_same(model.embeddings.token_embedding.weight, f[fx.SD1_CLIP + "embeddings.token_embedding.weight"])
    assert_same(model.final_layer_norm.bias, f[fx.SD1_CLIP + "final_layer_norm.bias"])
    assert model.embeddings.position_ids.tolist() == [list(range(77))]


def test_open_clip_weights_are_split_and_transposed(loaded):
    ckpt, f = loaded["sdxl"]
    g = ckpt.clip[1]
    model, p = text_model(g), fx.SDXL_CLIP_G
    w = g.spec.width
    fused = f[p + "transformer.resblocks.1.attn.in_proj_weight"]
    attn = model.encoder.layers[1].self_attn
    assert_same(attn.q_proj.weight, fused[:w])
    assert_same(attn.k_proj.weight, fused[w:2 * w])
    assert_same(attn.v_proj.weight, fused[2 * w:])
    assert_same(attn.v_proj.bias, f[p + "transformer.resblocks.1.attn.in_proj_bias"][2 * w:])
    assert_same(model.encoder.layers[0].mlp.fc1.weight, f[p + "transformer.resblocks.0.mlp.c_fc.weight"])
    assert_same(model.encoder.layers[0].layer_norm2.bias, f[p + "transformer.resblocks.0.ln_2.bias"])
    assert_same(model.embeddings.position_embedding.weight, f[p + "positional_embedding"])
    assert_same(model.final_layer_norm.weight, f[p + "ln_final.weight"])
    assert_same(g.model.text_projection.weight, f[p + "text_projection"].T)


def test_sdxl_unet_weights(loaded):
    ckpt, f = loaded["sdxl"]
    unet = ckpt.unet
    assert_same(unet.add_embedding.linear_1.weight, f[U + "label_emb.0.0.weight"])
    assert_same(unet.add_embedding.linear_2.bias, f[U + "label_emb.0.2.bias"])
    block = unet.down_blocks[1].attentions[0].transformer_blocks[1]
    assert_same(block.ff.net[2].weight, f[U + "input_blocks.3.1.transformer_blocks.1.ff.net.2.weight"])
    assert_same(unet.down_blocks[1].attentions[0].proj_in.weight, f[U + "input_blocks.3.1.proj_in.weight"])
    assert_same(unet.mid_block.attentions[0].transformer_blocks[1].attn1.to_out[0].bias,
                f[U + "middle_block.1.transformer_blocks.1.attn1.to_out.0.bias"])


def test_every_weight_is_a_file_tensor(loaded):
    """Nothing keeps its random init: each parameter equals a file tensor (the VAE's 1x1 convs squeezed), except
    what OpenCLIP stores fused or transposed (checked above)."""
    rebuilt = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias", "k_proj.bias", "v_proj.bias",
               "text_projection.weight")
    for family, (ckpt, f) in loaded.items():
        values = {(tuple(t.flatten()[:16].tolist()), t.numel()) for t in f.values() if t.is_floating_point()}
        models = [(ckpt.unet, ()), (ckpt.vae, ())]
        models += [(te.model, rebuilt if te.spec.layout == "open_clip" else ()) for te in ckpt.clip]
        for model, exempt in models:
            for name, param in model.named_parameters():
                if not name.endswith(exempt) or not exempt:
                    assert (tuple(param.flatten()[:16].tolist()), param.numel()) in values, f"{family}: {name}"


HEADS = {"sd1": [8, 8], "sd2": [1, 2], "sdxl": [1, 2], "sdxl_refiner": [1, 2, 2]}


@pytest.mark.parametrize("family", sorted(HEADS))
def test_attention_heads_and_sdpa(loaded, family):
    ckpt = loaded[family][0]
    unet = ckpt.unet
    for level, heads in enumerate(HEADS[family]):
        for block in (unet.down_blocks[level], unet.up_blocks[-1 - level]):
            for attention in getattr(block, "attentions", []):
                assert attention.transformer_blocks[0].attn1.heads == heads
    assert {type(p) for p in unet.attn_processors.values()} == {AttnProcessor2_0}
    assert {type(p) for p in ckpt.vae.attn_processors.values()} == {AttnProcessor2_0}
    for te in ckpt.clip:
        assert te.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("family", sorted(fx.TINY))
def test_models_are_ready_for_inference(loaded, family):
    ckpt = loaded[family][0]
    for model in (ckpt.unet, ckpt.vae, *(te.model for te in ckpt.clip)):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
        assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
        assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_model_sampling_and_scale(loaded):
    assert [(f, loaded[f][0].model_sampling, loaded[f][0].latent_scale_factor) for f in sorted(loaded)] == [
        ("sd1", "eps", 0.18215), ("sd2", "eps", 0.18215), ("sdxl", "eps", 0.13025),
        ("sdxl_refiner", "eps", 0.13025)]


def tokens():
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, :4] = torch.tensor([49406, 320, 1929, 49407])  # start, "a", "photo", end; zero padding as SD2/SDXL
    return ids


def encode(ckpt) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated hidden states of all encoders and the last encoder's projected pooled output."""
    outs = [te.model(input_ids=tokens()) for te in ckpt.clip]
    last = outs[-1]
    pooled = last.text_embeds if "text_embeds" in last else last.pooler_output
    return torch.cat([o.last_hidden_state for o in outs], dim=-1), pooled


@pytest.mark.parametrize("family", sorted(fx.TINY))
def test_text_encoders_give_context_wide_states(loaded, family):
    ckpt = loaded[family][0]
    hidden, pooled = encode(ckpt)
    assert hidden.shape == (1, 77, ckpt.spec.unet.context_dim)
    assert torch.isfinite(hidden).all()
    out = ckpt.clip[0].model(input_ids=tokens(), output_hidden_states=True)
    assert len(out.hidden_states) == ckpt.clip[0].spec.num_layers + 1


@pytest.mark.parametrize("family", sorted(fx.TINY))
def test_unet_forward_shape(loaded, family):
    ckpt = loaded[family][0]
    context, pooled = encode(ckpt)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    extra = {}
    if ckpt.spec.unet.adm_in_channels:  # SDXL: 6 size/crop numbers (refiner: 5 with the aesthetic score)
        n = (ckpt.spec.unet.adm_in_channels - pooled.shape[-1]) // 256
        extra["added_cond_kwargs"] = {"text_embeds": pooled.expand(2, -1),
                                      "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64][:n]] * 2)}
    with torch.no_grad():
        out = ckpt.unet(x, torch.tensor([999, 1]), encoder_hidden_states=context.expand(2, -1, -1), **extra).sample
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_vae_decodes_to_eight_times_the_size(loaded):
    vae = loaded["sd1"][0].vae
    with torch.no_grad():
        image = vae.decode(torch.randn(1, 4, 8, 6)).sample
        latent = vae.encode(torch.randn(1, 3, 32, 24)).latent_dist.mean
    assert image.shape == (1, 3, 64, 48)
    assert latent.shape == (1, 4, 4, 3)


def test_sd2_v_prediction_file(checkpoint_dir):
    path = fx.write_sd2(checkpoint_dir / "sd21-v.safetensors", v_pred=True)
    assert load_checkpoint(path, "cpu", torch.float32, load_clip=False, load_vae=False).model_sampling == \
        "v_prediction"


@pytest.mark.parametrize("family,writer", [("sd1", fx.write_sd15), ("sdxl", fx.write_sdxl)])
def test_inpainting_unet_takes_nine_channels(checkpoint_dir, family, writer):
    path = writer(checkpoint_dir / f"{family}-inpaint.safetensors", inpaint=True)
    ckpt = load_checkpoint(path, "cpu", torch.float32, load_vae=False)
    assert ckpt.spec.inpaint and ckpt.unet.conv_in.in_channels == 9
    context, pooled = encode(ckpt)
    extra = {}
    if family == "sdxl":
        extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    with torch.no_grad():
        out = ckpt.unet(torch.randn(1, 9, 8, 8), torch.tensor([500]), encoder_hidden_states=context, **extra)
    assert out.sample.shape == (1, 4, 8, 8)


def test_dtype_applies_to_floats_only(checkpoint_files):
    ckpt = load_checkpoint(checkpoint_files["sdxl"], "cpu", torch.bfloat16, load_vae=False)
    assert {p.dtype for p in ckpt.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for te in ckpt.clip for p in te.model.parameters()} == {torch.bfloat16}
    assert text_model(ckpt.clip[0]).embeddings.position_ids.dtype == torch.long


def test_parts_can_be_skipped(checkpoint_files):
    ckpt = load_checkpoint(checkpoint_files["sd1"], "cpu", torch.float32, load_unet=False, load_clip=False)
    assert ckpt.unet is None and ckpt.clip == () and ckpt.vae is not None
    assert ckpt.spec.family == "sd1"


@pytest.mark.parametrize("legacy", [False, True])
def test_ckpt_files_load_like_safetensors(tmp_path, loaded, legacy):
    sd = fx.sd15_state_dict()
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd, "global_step": 10}, path, _use_new_zipfile_serialization=not legacy)
    ckpt = load_checkpoint(path, "cpu", torch.float32)
    reference = loaded["sd1"][0]
    assert ckpt.spec == reference.spec
    for a, b in ((ckpt.unet, reference.unet), (ckpt.vae, reference.vae), (ckpt.clip[0].model, reference.clip[0].model)):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name


def test_fixture_files_are_seeded(tmp_path):
    same = [fx.write_sd15(tmp_path / f"{n}.safetensors").read_bytes() for n in "ab"]
    other = fx.write_sd15(tmp_path / "c.safetensors", seed=1).read_bytes()
    assert same[0] == same[1] and other != same[0] and len(other) == len(same[0])


# --- separate part files ----------------------------------------------------------------------------------------

def part(tensors: dict, prefix: str, keep_prefix: bool = False) -> dict:
    return {(k if keep_prefix else k.removeprefix(prefix)): v.contiguous() for k, v in tensors.items()
            if k.startswith(prefix)}


@pytest.mark.parametrize("keep_prefix", [False, True])
def test_unet_file(tmp_path, loaded, keep_prefix):
    ckpt, f = loaded["sdxl"]
    path = tmp_path / "unet.safetensors"
    save_file(part(f, U, keep_prefix), path)
    unet_only = load_unet_file(path, "cpu", torch.float32)
    assert unet_only.spec.family == "sdxl" and unet_only.clip == () and unet_only.vae is None
    assert unet_only.spec.unet.prefix == (U if keep_prefix else "")
    assert unet_only.latent_scale_factor == 0.13025
    assert_same(unet_only.unet.add_embedding.linear_1.weight, ckpt.unet.add_embedding.linear_1.weight)


@pytest.mark.parametrize("prefix", ["", V, "vae."])
def test_vae_file(tmp_path, loaded, prefix):
    f = loaded["sd1"][1]
    path = tmp_path / "vae.safetensors"
    save_file({prefix + k: v for k, v in part(f, V).items()}, path)
    vae = load_vae_file(path, "cpu", torch.float16)
    assert vae.dtype == torch.float16
    assert_same(vae.decoder.conv_out.weight, f[V + "decoder.conv_out.weight"].half())


def test_clip_file_transformers_layout(tmp_path, loaded):
    f = loaded["sd1"][1]
    path = tmp_path / "clip_l.safetensors"
    tensors = {"text_model." + k: v for k, v in part(f, fx.SD1_CLIP).items()}
    tensors["logit_scale"] = torch.tensor(4.6)  # full CLIP files carry training leftovers
    save_file(tensors, path)
    encoder = load_clip_file(path, "cpu", torch.float32)
    assert (encoder.name, encoder.spec.layout, encoder.spec.hidden_act) == ("l", "transformers", "quick_gelu")
    assert_same(text_model(encoder).encoder.layers[0].self_attn.q_proj.bias,
                f[fx.SD1_CLIP + "encoder.layers.0.self_attn.q_proj.bias"])


def test_clip_file_open_clip_layout(tmp_path, loaded):
    f = loaded["sdxl_refiner"][1]
    path = tmp_path / "clip_g.safetensors"
    save_file(part(f, fx.REFINER_CLIP_G), path)
    encoder = load_clip_file(path, "cpu", torch.float32, name="g")
    assert (encoder.name, encoder.spec.layout, encoder.spec.projection_dim) == ("g", "open_clip", 48)
    assert_same(encoder.model.text_projection.weight, f[fx.REFINER_CLIP_G + "text_projection"].T)


# --- bad files ------------------------------------------------------------------------------------------------------

def test_random_bytes_name_the_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match=r"^broken\.safetensors: not a recognised Stable Diffusion checkpoint"):
        load_checkpoint(path, "cpu", torch.float32)


def test_truncated_file(tmp_path, checkpoint_files):
    data = checkpoint_files["sd1"].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^cut\.safetensors: .*unreadable"):
        load_checkpoint(path, "cpu", torch.float32)


def test_garbage_ckpt(tmp_path):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"definitely not a pickle" * 10)
    with pytest.raises(CheckpointError, match=r"^junk\.ckpt: not a recognised"):
        load_checkpoint(path, "cpu", torch.float32)


def test_unknown_safetensors(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.tensor(1.0)}, path)
    with pytest.raises(CheckpointError, match=r"^lora\.safetensors: not a recognised .*input_blocks"):
        load_checkpoint(path, "cpu", torch.float32)
    with pytest.raises(CheckpointError, match=r"^lora\.safetensors: .*VAE"):
        load_vae_file(path, "cpu", torch.float32)
    with pytest.raises(CheckpointError, match=r"^lora\.safetensors: .*text encoder"):
        load_clip_file(path, "cpu", torch.float32)


def test_name_mismatches_are_listed(tmp_path):
    sd = fx.sd15_state_dict()
    del sd[U + "input_blocks.1.0.emb_layers.1.bias"]
    sd[U + "input_blocks.1.0.extra.weight"] = torch.zeros(3)
    path = tmp_path / "odd.safetensors"
    save_file(sd, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, "cpu", torch.float32)
    message = str(info.value)
    assert message.startswith("odd.safetensors: UNet weights do not match")
    assert "missing ['down_blocks.0.resnets.0.time_emb_proj.bias']" in message
    assert "unexpected ['down_blocks.0.resnets.0.extra.weight']" in message


def test_wrong_shapes_are_listed(tmp_path):
    sd = fx.sd15_state_dict()
    sd[V + "decoder.conv_out.bias"] = torch.zeros(4)
    path = tmp_path / "shape.safetensors"
    save_file(sd, path)
    with pytest.raises(CheckpointError, match=r"VAE weights .*wrong shape \['decoder.conv_out.bias'\]"):
        load_checkpoint(path, "cpu", torch.float32)
