"""FLUX.1 files: sizes read off the shapes, the original -> diffusers mapping, and the model's sampling maths."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from engine.models.detect import CheckpointError
from engine.models.flux import (FluxModel, detect_flux, diffusers_state, find_prefix, flux_config, image_ids, load_flux,
                                pack, unpack)
from engine.models.load import open_checkpoint
from engine.sampling import schedules
from engine.sampling.model_sampling import FlowModelSampling, FluxModelSampling, flux_shift_for_size
from tests.fixtures.flux import FULL_DEV, FluxLayout, flux_shapes, write_flux
from tests.fixtures.z_image import z_image_shapes


@pytest.mark.parametrize("prefix", ["model.diffusion_model.", ""])
def test_flux_dev_sizes(prefix):
    spec = detect_flux(flux_shapes(FULL_DEV, prefix), "flux1-dev.safetensors")
    assert (spec.prefix, spec.hidden, spec.num_layers, spec.num_single_layers, spec.num_heads) == \
        (prefix, 3072, 19, 38, 24)
    assert (spec.in_channels, spec.context_dim, spec.pooled_dim, spec.guidance) == (16, 4096, 768, True)
    assert flux_config(spec)["axes_dims_rope"] == (16, 56, 56)
    schnell = detect_flux(flux_shapes(dataclasses.replace(FULL_DEV, guidance=False)), "flux1-schnell.safetensors")
    assert not schnell.guidance


def test_other_files_are_not_flux():
    assert find_prefix(z_image_shapes()) is None
    with pytest.raises(CheckpointError, match="FLUX"):
        detect_flux(z_image_shapes(), "z.safetensors")
    odd = flux_shapes(dataclasses.replace(FluxLayout(), in_channels=48))
    with pytest.raises(CheckpointError, match="48 input / 16 output channels"):
        detect_flux(odd, "odd.safetensors")


@pytest.mark.parametrize("channels", [32, 96])  # Canny / Depth; Fill
def test_variants_with_image_inputs(channels):
    spec = detect_flux(flux_shapes(dataclasses.replace(FULL_DEV, in_channels=channels)), "variant")
    assert (spec.in_channels, spec.out_channels) == (channels, 16)
    assert (flux_config(spec)["in_channels"], flux_config(spec)["out_channels"]) == (4 * channels, 64)


@pytest.mark.parametrize("guidance", [True, False])
def test_mapping_matches_diffusers_converter_at_full_width(guidance):
    """diffusers' converter only knows the full 3072 width; on stand-ins of full-width row counts (one number per
    row, all different) both mappings must put the same rows under the same names."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    layout = dataclasses.replace(FULL_DEV, double_blocks=2, single_blocks=2, guidance=guidance)
    shapes = flux_shapes(layout, prefix="")
    stand_ins, start = {}, 0
    for key, shape in sorted(shapes.items()):
        stand_ins[key] = torch.arange(start, start + shape[0], dtype=torch.float64)
        start += shape[0]
    expected = convert_flux_transformer_checkpoint_to_diffusers(dict(stand_ins))
    spec = detect_flux(shapes, "full")
    with torch.device("meta"):
        wanted = {k: v.shape for k, v in FluxTransformer2DModel(**flux_config(spec)).state_dict().items()}
    ours = diffusers_state(spec, stand_ins, wanted)
    assert ours.keys() == expected.keys() == wanted.keys()
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key


def test_tiny_file_loads_with_every_weight_in_place(tmp_path):
    path = write_flux(tmp_path / "flux.safetensors", seed=1, prefix="")
    with open_checkpoint(path, torch.device("cpu")) as file:
        spec, transformer = load_flux(file, torch.device("cpu"), torch.float32)
        qkv = file.read("double_blocks.1.txt_attn.qkv.weight").float()
        linear1 = file.read("single_blocks.0.linear1.weight").float()
        final = file.read("final_layer.adaLN_modulation.1.weight").float()
    block = transformer.transformer_blocks[1].attn
    assert torch.equal(torch.cat([block.add_q_proj.weight, block.add_k_proj.weight, block.add_v_proj.weight]), qkv)
    single = transformer.single_transformer_blocks[0]
    assert torch.equal(torch.cat([single.attn.to_q.weight, single.attn.to_k.weight, single.attn.to_v.weight,
                                  single.proj_mlp.weight]), linear1)
    shift, scale = final.chunk(2)
    assert torch.equal(transformer.norm_out.linear.weight, torch.cat([scale, shift]))
    assert spec.guidance and transformer.config.guidance_embeds


def test_patch_tokens_round_trip_and_positions():
    x = torch.randn(2, 16, 6, 4)
    tokens = pack(x)
    assert tokens.shape == (2, 6, 64)
    assert torch.equal(tokens[0, 1], x[0, :, 0:2, 2:4].reshape(-1))  # second token: first row, second column
    assert torch.equal(unpack(tokens, 16, 6, 4), x)
    assert image_ids(6, 4, torch.device("cpu")).tolist() == [[0, r, c] for r in range(3) for c in range(2)]


def test_model_sampling_follows_the_kind_of_model(tmp_path):
    dev = write_flux(tmp_path / "dev.safetensors")
    schnell = write_flux(tmp_path / "schnell.safetensors", layout=dataclasses.replace(FluxLayout(), guidance=False))
    for path, kind in ((dev, FluxModelSampling), (schnell, FlowModelSampling)):
        with open_checkpoint(path, torch.device("cpu")) as file:
            model = FluxModel(load_flux(file, torch.device("cpu"), torch.float32)[1])
        assert type(model.model_sampling) is kind
    assert model.model_sampling.shift == 1.0 and model.model_sampling.multiplier == 1.0


def exponential_shift(mu, t):
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


def test_flux_model_sampling_table_and_percentages():
    ms = FluxModelSampling(1.15)
    assert len(ms.sigmas) == 10000
    for i in (1, 2500, 5000, 10000):
        assert math.isclose(float(ms.sigmas[i - 1]), exponential_shift(1.15, i / 10000), rel_tol=1e-6)
    assert float(ms.sigma_max) == 1.0
    sigma = torch.tensor([0.4])
    assert torch.equal(ms.timestep(sigma), sigma)
    assert ms.percent_to_sigma(0.0) == 1.0 and ms.percent_to_sigma(1.0) == 0.0
    assert math.isclose(ms.percent_to_sigma(0.3), exponential_shift(1.15, 0.7))
    simple = schedules.sigmas_for(ms, "simple", 4, 1.0, "euler")
    expected = [exponential_shift(1.15, t) for t in (1.0, 0.75, 0.5, 0.25)] + [0.0]
    assert torch.allclose(simple, torch.tensor(expected, dtype=simple.dtype), atol=1e-5)


def test_shift_from_image_size():
    assert math.isclose(flux_shift_for_size(1024, 1024), 1.15)  # 4096 tokens
    assert math.isclose(flux_shift_for_size(256, 256), 0.5)  # 256 tokens
    assert math.isclose(flux_shift_for_size(512, 512), 0.5 + 0.65 * 768 / 3840)


# -- LoRAs: the original layout's fused qkv / linear1, kohya's and diffusers' names ---------------------------------

LORA_LAYERS = {  # original layer -> the diffusers modules holding its rows, in order
    "double_blocks.0.img_attn.qkv": ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                     "transformer_blocks.0.attn.to_v"),
    "double_blocks.1.txt_mlp.2": ("transformer_blocks.1.ff_context.net.2",),
    "single_blocks.1.linear1": ("single_transformer_blocks.1.attn.to_q", "single_transformer_blocks.1.attn.to_k",
                                "single_transformer_blocks.1.attn.to_v", "single_transformer_blocks.1.proj_mlp"),
    "single_blocks.0.linear2": ("single_transformer_blocks.0.proj_out",),
    "txt_in": ("context_embedder",),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = write_flux(tmp_path_factory.mktemp("flux") / "flux.safetensors", seed=2)
    with open_checkpoint(path, torch.device("cpu")) as file:
        spec, transformer = load_flux(file, torch.device("cpu"), torch.float32)
        tensors = {k.removeprefix(spec.prefix): file.read(k).float() for k in file.shapes}
    return transformer, tensors


def test_original_names_point_at_the_weights_loaded_there(tiny):
    from engine.models.flux import original_names

    transformer, tensors = tiny
    ours = dict(transformer.named_parameters())
    mapping = original_names(list(ours))
    assert set(mapping) == {k for k in tensors if not k.startswith("final_layer.adaLN_modulation.")}
    for original, held in mapping.items():
        assert torch.equal(torch.cat([ours[n] for n in held]), tensors[original]), original
    held = sorted(n for names in mapping.values() for n in names)
    assert held == sorted(n for n in ours if not n.startswith("norm_out."))  # every other parameter, once


@pytest.mark.parametrize("naming", ["comfy", "kohya", "diffusers"])
def test_lora_layers_in_each_naming(tmp_path, tiny, naming):
    from safetensors.torch import save_file

    from engine.models.lora import load_lora

    transformer, tensors = tiny
    g = torch.Generator().manual_seed(5)
    lora, expected = {}, {}
    for layer, modules in LORA_LAYERS.items():
        rows, columns = tensors[layer + ".weight"].shape
        up, down = torch.randn(rows, 4, generator=g), torch.randn(4, columns, generator=g)
        ours = dict(transformer.named_parameters())
        sizes = [ours[m + ".weight"].shape[0] for m in modules]
        expected.update(zip((m + ".weight" for m in modules), (up @ down).split(sizes)))
        if naming == "comfy":
            lora.update({f"diffusion_model.{layer}.lora_B.weight": up, f"diffusion_model.{layer}.lora_A.weight": down})
        elif naming == "kohya":
            flat = "lora_unet_" + layer.replace(".", "_")
            lora.update({flat + ".lora_up.weight": up, flat + ".lora_down.weight": down, flat + ".alpha":
                         torch.tensor(4.0)})
        else:  # diffusers / ai-toolkit: one pair per diffusers module, each with its rows of up
            for module, part in zip(modules, up.split(sizes)):
                lora.update({f"transformer.{module}.lora_B.weight": part.contiguous(),
                             f"transformer.{module}.lora_A.weight": down.clone()})
    save_file(lora, str(tmp_path / "lora.safetensors"))
    patch = load_lora(tmp_path / "lora.safetensors")
    deltas = patch.deltas("unet", dict(transformer.named_parameters()))
    assert set(deltas) == set(expected)
    for name, change in expected.items():
        torch.testing.assert_close(deltas[name], change, rtol=1e-5, atol=1e-5)


def test_kontext_reference_placement():
    """Reference latents become extra tokens: "offset" puts each next to the ones before at index 1 (below when
    that keeps the covered area squarer, else to the right), "index" stacks them on indices 1, 2, ..., "uxo" puts
    them beyond the generated 8x8 latent at index 0. Ids count 2x2 patches; odd offsets round up."""
    from engine.models.flux import reference_tokens

    refs = [torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 6), torch.randn(1, 16, 4, 4)]

    def starts(method):
        tokens, ids = reference_tokens(refs, method, 8, 8)
        assert tokens.shape == (1, 16 + 12 + 4, 64) and ids.shape == (32, 3)
        return [ids[i].tolist() for i in (0, 16, 28)]  # each reference's first token

    # offset: (8x8) at 0,0 -> covers 8x8; (8x6): 8 + 8 > 6 + 8 -> right of it at column 8; covers 8x14;
    # (4x4): 4 + 8 > 4 + 14 is false -> below, at row 8
    assert starts("offset") == [[1, 0, 0], [1, 0, 4], [1, 4, 0]]
    assert starts("index") == [[1, 0, 0], [2, 0, 0], [3, 0, 0]]
    # uxo: each at (8 + rows, 8 + columns of all references before it), in latent pixels
    assert starts("uxo") == [[0, 4, 4], [0, 8, 8], [0, 12, 11]]
    assert torch.equal(reference_tokens(refs[:1], "offset", 8, 8)[0], pack(refs[0]))
