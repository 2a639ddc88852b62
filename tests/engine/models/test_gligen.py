"""GLIGEN text boxes: loading the released key layout, the box tokens, the fusers' math, and how the grounding
reaches the UNet and the unconditional prediction, on tiny random-weight files."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from engine.models import convert
from engine.models.detect import CheckpointError, detect_unet
from engine.models.diffusion import DiffusionModel
from engine.models.gligen import (
    MAX_OBJECTS,
    FuserLayout,
    Gligen,
    fuser_heads,
    grounding_kwargs,
    load_gligen_file,
    pack_boxes,
)
from engine.models.load import load_checkpoint
from engine.sampling.guidance import Cond, calc_cond_batch, share_gligen_with_uncond
from engine.sampling.model_sampling import discrete_model_sampling
from tests.fixtures import checkpoints as ck
from tests.fixtures.gligen import gligen_state_dict, write_gligen

# The tiny SD1 UNet's spatial transformers in forward order (LDM input blocks, middle block, output blocks).
TINY_TRANSFORMERS = ("input_blocks.1.1.", "middle_block.1.", "output_blocks.2.1.", "output_blocks.3.1.")
TEXT_WIDTH = ck.TINY["sd1"].text[0][2].width


@pytest.fixture(scope="module")
def gligen_file(tmp_path_factory):
    return write_gligen(tmp_path_factory.mktemp("gligen") / "gligen.safetensors")


@pytest.fixture(scope="module")
def gligen(gligen_file) -> Gligen:
    return load_gligen_file(gligen_file, "cpu", torch.float32)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory) -> DiffusionModel:
    path = ck.write_sd15(tmp_path_factory.mktemp("sd1") / "sd1.safetensors")
    loaded = load_checkpoint(path, "cpu", torch.float32, load_clip=False, load_vae=False)
    return DiffusionModel(loaded.unet, "sd1", "eps", loaded.latent_scale_factor)


def pooled(seed: int) -> torch.Tensor:
    return torch.randn(1, TEXT_WIDTH, generator=torch.Generator().manual_seed(seed))


def unet_inputs(batch=2, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, size, size, generator=g) * 3, torch.full((batch,), 3.0),
            torch.randn(batch, 7, 32, generator=g))


# -- loading ---------------------------------------------------------------------------------------------------


def test_load_puts_every_tensor_of_the_file_in_place(gligen_file):
    file = {k: v.float() for k, v in load_file(gligen_file).items()}
    model = load_gligen_file(gligen_file, "cpu", torch.float16)
    params = {f"position_net.{k}": v for k, v in model.position_net.state_dict().items()}
    for index, transformer in enumerate(TINY_TRANSFORMERS):
        prefix = f"{transformer}transformer_blocks.0.fuser."
        params.update({prefix + k: v for k, v in model.fusers[index].state_dict().items()})
    assert params.keys() == file.keys()
    for key, value in file.items():
        assert torch.equal(params[key].float(), value), key
    # the fusers run in the model's dtype, the position net in float32 (as ComfyUI runs it)
    assert {p.dtype for p in model.fusers.parameters()} == {torch.float16}
    assert {p.dtype for p in model.position_net.parameters()} == {torch.float32}
    assert [f.linear.weight.shape[0] for f in model.fusers] == [32, 64, 32, 32]


def test_fuser_keys_under_the_unet_prefix_load_the_same(tmp_path, gligen):
    path = tmp_path / "full.safetensors"
    renamed = {k if k.startswith("position_net.") else "model.diffusion_model." + k: v
               for k, v in gligen_state_dict().items()}
    save_file(renamed, str(path))
    other = load_gligen_file(path, "cpu", torch.float32)
    for a, b in zip(gligen.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_heads_follow_comfyui_rule():
    # 768-wide tokens (SD1 GLIGENs): 8 heads of width/8; otherwise 64-wide heads.
    assert fuser_heads(768, 320) == 8 and fuser_heads(768, 1280) == 8
    assert fuser_heads(1024, 320) == 5 and fuser_heads(1024, 1280) == 20
    assert fuser_heads(32, 32) == 1  # narrower than one head: a single head
    assert FuserLayout(width=320, token_width=768, inner_width=320).heads == 8


def test_files_that_are_not_gligen_are_refused(tmp_path):
    no_position = {k: v for k, v in gligen_state_dict().items() if not k.startswith("position_net.")}
    save_file(no_position, str(tmp_path / "a.safetensors"))
    with pytest.raises(CheckpointError, match="not a supported GLIGEN"):
        load_gligen_file(tmp_path / "a.safetensors", "cpu", torch.float32)
    ck.write_sd15(tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match="not a supported GLIGEN"):
        load_gligen_file(tmp_path / "b.safetensors", "cpu", torch.float32)


# -- the box tokens -------------------------------------------------------------------------------------------


def test_boxes_are_packed_as_corner_fractions_of_the_latent():
    a, b = pooled(1), pooled(2)
    # (pooled, h, w, y, x) in latent pixels on an 8 x 12 latent
    corners, mask, features = pack_boxes([(a, 2, 3, 1, 4), (b, 8, 12, 0, 0)], 8, 12, TEXT_WIDTH)
    assert corners.shape == (MAX_OBJECTS, 4) and mask.shape == (MAX_OBJECTS,)
    assert features.shape == (MAX_OBJECTS, TEXT_WIDTH)
    assert torch.allclose(corners[0], torch.tensor([4 / 12, 1 / 8, 7 / 12, 3 / 8]))
    assert torch.equal(corners[1], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.equal(mask, torch.tensor([1.0, 1.0] + [0.0] * (MAX_OBJECTS - 2)))
    assert torch.equal(features[0], a[0]) and torch.equal(features[1], b[0])
    assert not corners[2:].any() and not features[2:].any()
    with pytest.raises(ValueError, match="at most 30"):
        pack_boxes([(a, 1, 1, 0, 0)] * (MAX_OBJECTS + 1), 8, 8, TEXT_WIDTH)


def reference_tokens(file: dict, corners, mask, features) -> torch.Tensor:
    """The position net as the GLIGEN paper's code computes it: per frequency 100^(i/8), sin then cos of the four
    corners; masked rows take the null features; then Linear-SiLU-Linear-SiLU-Linear."""
    fourier = torch.cat([f(100 ** (i / 8) * corners) for i in range(8) for f in (torch.sin, torch.cos)], dim=-1)
    m = mask[:, None]
    text = features * m + (1 - m) * file["position_net.null_positive_feature"]
    fourier = fourier * m + (1 - m) * file["position_net.null_position_feature"]
    h = torch.cat([text, fourier], dim=-1)
    for i in (0, 2, 4):
        h = F.linear(h, file[f"position_net.linears.{i}.weight"], file[f"position_net.linears.{i}.bias"])
        h = F.silu(h) if i < 4 else h
    return h


def test_tokens_follow_the_position_net_formula(gligen, gligen_file):
    file = {k: v.float() for k, v in load_file(gligen_file).items()}
    boxes = [(pooled(1), 2, 3, 1, 4), (pooled(2), 4, 4, 4, 8)]
    tokens = gligen.tokens(boxes, (3, 4, 8, 12))
    assert tokens.shape == (3, MAX_OBJECTS, 32) and tokens.dtype == torch.float32
    expected = reference_tokens(file, *pack_boxes(boxes, 8, 12, TEXT_WIDTH))
    for row in tokens:
        assert torch.allclose(row, expected, atol=1e-5)
    empty = gligen.tokens([], (1, 4, 8, 12))[0]
    assert torch.allclose(empty, expected[-1].expand_as(empty), atol=1e-6)  # every token null


def reference_fuser(f, x, objs):
    """ComfyUI's gated self-attention: attend over [visual; grounding] tokens, keep the visual ones, gate by
    tanh(alpha); then a gated GEGLU feed-forward."""
    n, heads = x.shape[1], f.attn.heads
    objs = F.linear(objs, f.linear.weight, f.linear.bias)
    h = F.layer_norm(torch.cat([x, objs], 1), (x.shape[-1],), f.norm1.weight, f.norm1.bias)
    q, k, v = (F.linear(h, w).unflatten(-1, (heads, -1)).transpose(1, 2)
               for w in (f.attn.to_q.weight, f.attn.to_k.weight, f.attn.to_v.weight))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    attended = F.linear((weights @ v).transpose(1, 2).flatten(2), f.attn.to_out[0].weight, f.attn.to_out[0].bias)
    x = x + torch.tanh(f.alpha_attn) * attended[:, :n]
    value, gate = F.linear(F.layer_norm(x, (x.shape[-1],), f.norm2.weight, f.norm2.bias),
                           f.ff.net[0].proj.weight, f.ff.net[0].proj.bias).chunk(2, dim=-1)
    return x + torch.tanh(f.alpha_dense) * F.linear(value * F.gelu(gate), f.ff.net[2].weight, f.ff.net[2].bias)


@pytest.mark.parametrize("token_width", [768, 40])  # 8 heads of 4 (SD1 rule); one head of 32
def test_fusers_compute_comfyuis_gated_self_attention(token_width):
    torch.manual_seed(0)
    model = Gligen(TEXT_WIDTH, token_width, [FuserLayout(width=32, token_width=token_width, inner_width=32)])
    fuser = model.fusers[0]
    with torch.no_grad():
        fuser.alpha_attn.fill_(0.7)
        fuser.alpha_dense.fill_(-0.4)
    x, objs = torch.randn(2, 12, 32), torch.randn(2, MAX_OBJECTS, token_width)
    with torch.no_grad():
        assert torch.allclose(fuser(x, objs), reference_fuser(fuser, x, objs), atol=1e-5)


# -- grounding the UNet ---------------------------------------------------------------------------------------


def test_boxes_change_the_unet_output_only_when_present(sd1, gligen):
    x, sigma, context = unet_inputs()
    plain = sd1.apply_model(x, sigma, c_crossattn=context)
    box = ("position", gligen, [(pooled(1), 4, 4, 0, 0)])
    grounded = sd1.apply_model(x, sigma, c_crossattn=context, gligen=box)
    assert not torch.allclose(grounded, plain, atol=1e-3)
    # the UNet keeps its slots, but calls without boxes are exactly what they were
    assert torch.equal(sd1.apply_model(x, sigma, c_crossattn=context), plain)
    elsewhere = sd1.apply_model(x, sigma, c_crossattn=context, gligen=("position", gligen, [(pooled(1), 4, 4, 4, 4)]))
    assert not torch.allclose(elsewhere, grounded, atol=1e-3)
    # ComfyUI's empty patch still runs the fusers, on null tokens only
    empty = sd1.apply_model(x, sigma, c_crossattn=context, gligen=("empty", gligen))
    no_boxes = sd1.apply_model(x, sigma, c_crossattn=context, gligen=("position", gligen, []))
    assert torch.equal(empty, no_boxes) and not torch.allclose(empty, plain, atol=1e-3)


def test_grounded_unet_matches_diffusers_own_gligen_unet(sd1, gligen):
    """diffusers' "gated" UNet has a fuser in every transformer block and its own position net; with the same
    weights (each block given its spatial transformer's fuser) it must give what the slots give."""
    _, spec = detect_unet(ck.unet_shapes(ck.TINY["sd1"].unet), ck.UNET, "tiny")
    native = UNet2DConditionModel(**convert.unet_config(spec), attention_type="gated").eval()
    state = dict(sd1.unet.state_dict())
    state.update({f"position_net.{k}": v for k, v in gligen.position_net.state_dict().items()})
    blocks = [(name.rsplit(".transformer_blocks.", 1)[0], name) for name, module in native.named_modules()
              if name.endswith(".fuser")]
    # forward order: down blocks, middle block, up blocks (diffusers registers the up blocks before the middle)
    sections = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    transformers = sorted(dict.fromkeys(t for t, _ in blocks), key=lambda t: (
        sections[t.split(".")[0]], [int(part) for part in t.split(".") if part.isdigit()]))
    for transformer, name in blocks:
        fuser = gligen.fusers[transformers.index(transformer)]
        state.update({f"{name}.{k}": v for k, v in fuser.state_dict().items()})
        native.get_submodule(name).attn.heads = fuser.attn.heads
    native.load_state_dict(state, strict=True)

    x, sigma, context = unet_inputs()
    boxes = [(pooled(1), 4, 2, 1, 3), (pooled(3), 2, 8, 6, 0)]
    corners, mask, features = pack_boxes(boxes, 8, 8, TEXT_WIDTH)
    timestep = sd1.model_sampling.timestep(sigma).float()
    with torch.no_grad():
        expected = native(x, timestep, encoder_hidden_states=context, return_dict=False, cross_attention_kwargs={
            "gligen": {"boxes": corners.expand(2, -1, -1), "masks": mask.expand(2, -1),
                       "positive_embeddings": features.expand(2, -1, -1)}})[0]
        ours = sd1.unet(x, timestep, encoder_hidden_states=context, return_dict=False,
                        **grounding_kwargs(("position", gligen, boxes), sd1.unet, x))[0]
    assert torch.allclose(ours, expected, atol=1e-5)


def test_a_gligen_for_another_unet_is_refused(sd1):
    layouts = [FuserLayout(width=32, token_width=32, inner_width=32)] * 3
    other = Gligen(TEXT_WIDTH, 32, layouts).eval()
    x, sigma, context = unet_inputs()
    with pytest.raises(ValueError, match="3 fusers but the model has 4 spatial transformers"):
        sd1.apply_model(x, sigma, c_crossattn=context, gligen=("position", other, []))


# -- guidance: batching and the unconditional prediction ------------------------------------------------------


def test_uncond_takes_the_whole_image_positives_boxes():
    entry = ("position", object(), [])
    positive = [Cond({}, options={"gligen": entry}, gligen=entry)]
    negative = [Cond({}), Cond({}, area=(4, 4, 0, 0), options={"area": (4, 4, 0, 0)})]
    share_gligen_with_uncond(positive, negative)
    assert negative[0].gligen is entry and negative[1].gligen is None
    # a negative with its own boxes keeps them; area positives share nothing
    own = ("position", object(), [])
    negative = [Cond({}, gligen=own)]
    share_gligen_with_uncond(positive, negative)
    assert negative[0].gligen is own
    negative = [Cond({})]
    share_gligen_with_uncond([Cond({}, area=(4, 4, 0, 0), options={"area": (4, 4, 0, 0)}, gligen=entry)], negative)
    assert negative[0].gligen is None


class RecordingModel:
    def __init__(self):
        self.model_sampling = discrete_model_sampling()
        self.calls = []

    def apply_model(self, x, sigma, c_crossattn, gligen=None, transformer_options=None):
        self.calls.append((x.shape[0], gligen))
        return torch.zeros_like(x)


def test_boxes_reach_the_model_and_batch_only_with_the_same_boxes():
    entry = ("position", object(), [])
    x, sigma = torch.zeros(1, 4, 8, 8), torch.tensor([5.0])
    context = {"c_crossattn": torch.zeros(1, 77, 8)}
    model = RecordingModel()
    calc_cond_batch(model, [[Cond(dict(context), gligen=entry)], [Cond(dict(context))]], x, sigma)
    assert model.calls == [(1, entry), (1, None)]
    model = RecordingModel()
    calc_cond_batch(model, [[Cond(dict(context), gligen=entry)], [Cond(dict(context), gligen=entry)]], x, sigma)
    assert model.calls == [(2, entry)]
