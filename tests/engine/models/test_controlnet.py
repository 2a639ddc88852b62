"""ControlNets and T2I-Adapters: detection, loading, and what they add to a UNet, on tiny random-weight files."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from diffusers import T2IAdapter as DiffusersAdapter
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from engine.models import convert
from engine.models.controlnet import (
    ControlLora,
    ControlNet,
    Residuals,
    T2IAdapter,
    _intrablock_points,
    broadcast_hint,
    load_control_file,
)
from engine.models.detect import CheckpointError, detect, detect_unet
from engine.models.diffusion import DiffusionModel
from engine.models.load import load_checkpoint
from engine.models.manager import ModelManager
from engine.sampling.guidance import Cond, calc_cond_batch, share_control_with_uncond
from engine.sampling.model_sampling import discrete_model_sampling
from tests.fixtures import checkpoints as ck
from tests.fixtures import controlnets as fx

# An SDXL-shaped UNet with SDXL's three levels and two res blocks per level (what SDXL T2I-Adapters feed).
SDXL_THREE_LEVELS = ck.UNetLayout(64, (1, 2, 4), 2, (0, 1, 1), 1, context_dim=80, linear_proj=True,
                                  adm_in_channels=6 * ck.FOURIER + 48)
MS = discrete_model_sampling("eps")


def unet_for(layout: ck.UNetLayout, seed: int = 0) -> UNet2DConditionModel:
    _, spec = detect_unet(ck.unet_shapes(layout), ck.UNET, "test")
    torch.manual_seed(seed)
    return UNet2DConditionModel(**convert.unet_config(spec)).eval()


def floats(path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(path).items()}


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    """(tiny SD1 checkpoint as a DiffusionModel in float32, its file's tensors)."""
    path = ck.write_sd15(tmp_path_factory.mktemp("sd1") / "sd1.safetensors")
    loaded = load_checkpoint(path, "cpu", torch.float32, load_clip=False, load_vae=False)
    model = DiffusionModel(loaded.unet, "sd1", "eps", loaded.latent_scale_factor)
    return model, floats(path)


def inputs(batch=2, size=4, context=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, size, size, generator=g) * 3, torch.full((batch,), 3.0),
            {"c_crossattn": torch.randn(batch, 7, context, generator=g)})


def hint(seed=2, size=(40, 56)):
    return torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))


def assert_close(a, b, tol=1e-5):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max()


# -- detection and loading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family, prefix", [("sd1", fx.CONTROL), ("sd1", ""), ("sd2", fx.CONTROL), ("sdxl", "")])
def test_ldm_controlnets_load_for_each_family(tmp_path, family, prefix):
    path = fx.write_controlnet(tmp_path / "cn.safetensors", family, prefix=prefix)
    control = load_control_file(path, "cpu", torch.float32)
    f = floats(path)
    net = control.control_model
    assert isinstance(control, ControlNet) and control.hint is None
    assert torch.equal(net.controlnet_cond_embedding.conv_in.weight, f[prefix + "input_hint_block.0.weight"])
    assert torch.equal(net.controlnet_cond_embedding.conv_out.weight, f[prefix + "input_hint_block.14.weight"])
    assert torch.equal(net.controlnet_cond_embedding.blocks[5].bias, f[prefix + "input_hint_block.12.bias"])
    widths = fx.input_block_widths(ck.TINY[family].unet)
    assert len(net.controlnet_down_blocks) == len(widths)
    for i in range(len(widths)):
        assert torch.equal(net.controlnet_down_blocks[i].weight, f[f"{prefix}zero_convs.{i}.0.weight"])
    assert torch.equal(net.controlnet_mid_block.bias, f[prefix + "middle_block_out.0.bias"])
    if family == "sdxl":
        assert torch.equal(net.add_embedding.linear_1.weight, f[prefix + "label_emb.0.0.weight"])


def test_adapters_are_detected_with_their_layout(tmp_path):
    full = load_control_file(fx.write_t2i_adapter(tmp_path / "a.safetensors"), "cpu", torch.float16)
    light = load_control_file(fx.write_t2i_adapter(tmp_path / "b.safetensors", kind="light", blocks_per_level=3),
                              "cpu", torch.float16)
    xl = load_control_file(fx.write_t2i_adapter(tmp_path / "c.safetensors", layout=SDXL_THREE_LEVELS, xl=True,
                                                hint_channels=1), "cpu", torch.float16)
    assert isinstance(full, T2IAdapter)
    assert (full.control_model.layout.kind, full.control_model.layout.channels) == ("full", (32, 64, 128, 128))
    assert (light.control_model.layout.kind, light.control_model.layout.blocks_per_level) == ("light", 3)
    assert (xl.control_model.layout.xl, xl.control_model.layout.hint_channels) == (True, 1)
    # ComfyUI's facts: SD adapters feed input blocks 2, 5, 8, 11; SDXL ones 3, 5, 8 and the middle block.
    assert full.control_model.layout.slots == (2, 5, 8, 11)
    assert xl.control_model.layout.slots == (3, 5, 8, None)
    assert next(full.control_model.parameters()).dtype == torch.float32  # adapters run in float32


def test_unrecognised_files_and_control_loras_without_a_hint_block_are_rejected(tmp_path):
    other = tmp_path / "vae.safetensors"
    save_file({"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)}, str(other))
    with pytest.raises(CheckpointError, match="vae.safetensors: not a supported ControlNet"):
        load_control_file(other, "cpu", torch.float32)
    lora = tmp_path / "control-lora.safetensors"
    save_file({"lora_controlnet": torch.zeros(1), "zero_convs.0.0.weight": torch.zeros(4, 4, 1, 1)}, str(lora))
    with pytest.raises(CheckpointError, match="control-lora.safetensors: .*Control-LoRA without 'input_hint_block'"):
        load_control_file(lora, "cpu", torch.float32)


def copy_of_unet(tensors: dict, layout: ck.UNetLayout) -> dict:
    """A ControlNet whose UNet half is the checkpoint's own, whose hint embedding outputs zero and whose zero
    convs are identities: its residuals are then exactly the UNet's own skip and middle activations."""
    shapes = fx.controlnet_shapes(layout)
    out = {}
    for key, shape in shapes.items():
        source = ck.UNET + key[len(fx.CONTROL):]
        if source in tensors:
            out[key] = tensors[source]
        elif ".zero_convs." in key or ".middle_block_out." in key:
            out[key] = torch.eye(shape[0]).reshape(shape) if key.endswith("weight") else torch.zeros(shape)
        else:  # the hint embedding: random convs, then an all-zero last one
            value = torch.randn(shape, generator=torch.Generator().manual_seed(len(key))) * 0.1
            out[key] = torch.zeros(shape) if ".input_hint_block.14." in key else value
    return out


def unet_activations(unet, x, t, context, added=None):
    """(skip activations in order, middle block output) of one UNet call, read with forward hooks."""
    skips, middle = [], []
    hooks = [unet.conv_in.register_forward_hook(lambda m, i, o: skips.append(o))]
    hooks += [b.register_forward_hook(lambda m, i, o: skips.extend(o[1])) for b in unet.down_blocks]
    hooks.append(unet.mid_block.register_forward_hook(lambda m, i, o: middle.append(o)))
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added)
    for h in hooks:
        h.remove()
    return skips, middle[0]


def test_a_controlnet_copied_from_the_unet_reproduces_its_activations(tmp_path, sd1):
    model, tensors = sd1
    path = tmp_path / "copy.safetensors"
    save_file(copy_of_unet(tensors, ck.TINY["sd1"].unet), str(path))
    control = load_control_file(path, "cpu", torch.float32).set_cond_hint(hint(), 1.0)
    x, sigma, conds = inputs()
    with torch.no_grad():
        residuals = control.residuals(model.model_sampling, x, sigma, conds, 2)
    skips, middle = unet_activations(model.unet, MS.calculate_input(sigma, x), MS.timestep(sigma),
                                     conds["c_crossattn"])
    assert len(residuals.skips) == len(skips) == 4 and residuals.blocks == []
    for ours, theirs in zip(residuals.skips, skips):
        assert_close(ours, theirs)
    assert_close(residuals.middle, middle)


def test_sdxl_controlnet_residuals_fit_the_unets_blocks(tmp_path):
    loaded = load_checkpoint(ck.write_sdxl(tmp_path / "xl.safetensors"), "cpu", torch.float32,
                             load_clip=False, load_vae=False)
    model = DiffusionModel(loaded.unet, "sdxl", "eps", loaded.latent_scale_factor)
    control = load_control_file(fx.write_controlnet(tmp_path / "cn.safetensors", "sdxl"), "cpu", torch.float32)
    x, sigma, conds = inputs(context=80)
    conds["text_embeds"] = torch.randn(2, 48)
    conds["time_ids"] = torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)
    with torch.no_grad():
        residuals = control.set_cond_hint(hint(), 1.0).residuals(model.model_sampling, x, sigma, conds, 2)
        skips, middle = unet_activations(model.unet, x, MS.timestep(sigma), conds["c_crossattn"],
                                         {k: conds[k] for k in ("text_embeds", "time_ids")})
        controlled = model.apply_model(x, sigma, control=residuals, **conds)
    assert [r.shape for r in residuals.skips] == [s.shape for s in skips]
    assert residuals.middle.shape == middle.shape
    assert not torch.allclose(controlled, model.apply_model(x, sigma, **conds), atol=1e-3)


def test_difference_controlnets_add_the_model_weights(tmp_path, sd1):
    model, tensors = sd1
    full = copy_of_unet(tensors, ck.TINY["sd1"].unet)
    diff = {k: torch.zeros_like(v) if ck.UNET + k[len(fx.CONTROL):] in tensors else v for k, v in full.items()}
    diff["difference"] = torch.zeros(())
    save_file(full, str(tmp_path / "full.safetensors"))
    save_file(diff, str(tmp_path / "diff.safetensors"))
    a = load_control_file(tmp_path / "full.safetensors", "cpu", torch.float32).control_model.state_dict()
    b = load_control_file(tmp_path / "diff.safetensors", "cpu", torch.float32, diff_unet=model.unet)
    for key, value in b.control_model.state_dict().items():
        assert torch.equal(value, a[key]), key


def test_diffusers_saved_controlnets_load_the_same_network(tmp_path, sd1):
    model, _ = sd1
    ldm = load_control_file(fx.write_controlnet(tmp_path / "ldm.safetensors", "sd1", seed=4), "cpu", torch.float32)
    save_file({k: v.contiguous() for k, v in ldm.control_model.state_dict().items()},
              str(tmp_path / "diffusers.safetensors"))
    again = load_control_file(tmp_path / "diffusers.safetensors", "cpu", torch.float32)
    assert again.control_model.config.attention_head_dim == ldm.control_model.config.attention_head_dim
    x, sigma, conds = inputs()
    with torch.no_grad():
        a = ldm.set_cond_hint(hint(), 0.5).residuals(MS, x, sigma, conds)
        b = again.set_cond_hint(hint(), 0.5).residuals(MS, x, sigma, conds)
    for ours, theirs in zip(a.skips + [a.middle], b.skips + [b.middle]):
        assert torch.equal(ours, theirs)


# -- T2I-Adapters --------------------------------------------------------------------------------------------


def diffusers_adapter(kind: str, channels, xl=False, blocks=2):
    torch.manual_seed(5)
    adapter_type = {"full": "full_adapter_xl" if xl else "full_adapter", "light": "light_adapter"}[kind]
    if kind == "light":  # diffusers' light adapter adds a level of the last width itself
        channels = channels[:-1]
    return DiffusersAdapter(in_channels=3, channels=list(channels), num_res_blocks=blocks,
                            downscale_factor=16 if xl else 8, adapter_type=adapter_type).eval()


def original_names(state: dict, kind: str) -> dict:
    """A diffusers light adapter's tensors under TencentARC's names (for full ones the loader does this)."""
    return {re.sub(r"^adapter\.body\.(\d+)\.resnets\.", r"body.\1.body.", k).replace("adapter.", ""): v
            for k, v in state.items()} if kind == "light" else state


@pytest.mark.parametrize("kind, xl", [("full", False), ("full", True), ("light", False)])
def test_adapter_features_match_diffusers_t2i_adapter(tmp_path, kind, xl):
    channels = (64, 128, 256, 256) if xl else (32, 64, 128, 128)
    reference = diffusers_adapter(kind, channels, xl)
    path = tmp_path / "adapter.safetensors"
    save_file(original_names(reference.state_dict(), kind), str(path))
    ours = load_control_file(path, "cpu", torch.float32).control_model
    image = hint(size=(64, 128))  # even sizes at every level: diffusers pools odd ones another way
    with torch.no_grad():
        expected, got = reference(image), ours(image)
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert_close(a, b)


def test_adapter_downsampling_zero_pads_odd_sizes_like_the_original():
    from engine.models.t2i_adapter import _downsample
    assert _downsample(torch.ones(1, 1, 3, 3)).flatten().tolist() == [0.25, 0.5, 0.5, 1.0]


def inject_like_ldm(unet, blocks: dict, middle=None):
    """Forward hooks adding `blocks[k]` to the output of LDM input block k (and `middle` after the middle block):
    ComfyUI's "input"/"middle" control, written against the UNet's own modules."""
    modules = [unet.conv_in]
    for block in unet.down_blocks:
        parts = block.attentions if getattr(block, "has_cross_attention", False) else block.resnets
        modules += list(parts) + (list(block.downsamplers) if block.downsamplers is not None else [])

    def adder(value):
        def hook(module, args, output):
            return (output[0] + value,) + tuple(output[1:]) if isinstance(output, tuple) else output + value
        return hook
    hooks = [modules[k].register_forward_hook(adder(v)) for k, v in blocks.items()]
    if middle is not None:
        hooks.append(unet.mid_block.register_forward_hook(adder(middle)))
    return hooks


def block_shapes(unet, x, t, context, added=None):
    """Output shape of every LDM input block, read from a plain call."""
    skips = []
    hooks = [unet.conv_in.register_forward_hook(lambda m, i, o: skips.append(o.shape))]
    hooks += [b.register_forward_hook(lambda m, i, o: skips.extend(s.shape for s in o[1])) for b in unet.down_blocks]
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added)
    for h in hooks:
        h.remove()
    return skips


@pytest.mark.parametrize("layout, slots", [(fx.SD1_FOUR_LEVELS, (2, 5, 8, 11)),
                                           (SDXL_THREE_LEVELS, (3, 5, 8, None))])
def test_adapter_features_land_where_comfyui_adds_them(layout, slots):
    unet = unet_for(layout)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([500.0, 500.0])
    context = torch.randn(2, 5, layout.context_dim, generator=g)
    added = None
    if layout.adm_in_channels:
        added = {"text_embeds": torch.randn(2, 48, generator=g), "time_ids": torch.rand(2, 6, generator=g) * 64}
    shapes = block_shapes(unet, x, t, context, added)
    blocks = {k: torch.randn(shapes[k], generator=g) for k in slots if k is not None}
    middle = torch.randn(shapes[-1], generator=g) if None in slots else None
    hooks = inject_like_ldm(unet, blocks, middle)
    with torch.no_grad():
        expected = unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
    for h in hooks:
        h.remove()
    residuals = Residuals(blocks=[blocks.get(k) for k in range(max(blocks) + 1)], middle=middle)
    with torch.no_grad():
        got = unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added,
                   **residuals.unet_kwargs(unet, x.device)).sample
        plain = unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
    assert_close(got, expected, 1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)


@pytest.mark.parametrize("family, points", [("sd1", [2, 5, 8, 11]), ("sdxl", [3, 5, 8])])
def test_diffusers_adapter_injection_points_are_comfyuis_slots_for_released_models(family, points):
    spec = detect(ck.checkpoint_shapes(family, full=True)).unet
    with torch.device("meta"):
        unet = UNet2DConditionModel(**convert.unet_config(spec))
    assert _intrablock_points(unet) == points


def test_t2i_adapter_residuals_scale_with_strength_and_follow_the_slots(tmp_path):
    adapter = load_control_file(fx.write_t2i_adapter(tmp_path / "a.safetensors"), "cpu", torch.float32)
    x, sigma, conds = inputs(size=8)
    one = adapter.copy().set_cond_hint(hint(), 1.0).residuals(MS, x, sigma, conds, 2)
    half = adapter.copy().set_cond_hint(hint(), 0.5).residuals(MS, x, sigma, conds, 2)
    assert [i for i, b in enumerate(one.blocks) if b is not None] == [2, 5, 8, 11]
    assert [tuple(one.blocks[i].shape) for i in (2, 5, 8, 11)] == [(1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2),
                                                                   (1, 128, 1, 1)]
    assert one.skips == [] and one.middle is None
    for a, b in zip(one.blocks, half.blocks):
        assert (a is None and b is None) or torch.allclose(a * 0.5, b)


# -- strength, timestep range, chaining, batching --------------------------------------------------------------


@pytest.fixture(scope="module")
def controlnet_file(tmp_path_factory):
    return fx.write_controlnet(tmp_path_factory.mktemp("cn") / "cn.safetensors", "sd1")


def residual_tensors(r: Residuals):
    return [t for t in r.blocks + r.skips + [r.middle] if t is not None]


def test_strength_zero_leaves_the_model_output_unchanged(sd1, controlnet_file):
    model, _ = sd1
    control = load_control_file(controlnet_file, "cpu", torch.float32)
    x, sigma, conds = inputs()
    with torch.no_grad():
        plain = model.apply_model(x, sigma, **conds)
        zero = control.copy().set_cond_hint(hint(), 0.0).residuals(MS, x, sigma, conds, 2)
        full = control.copy().set_cond_hint(hint(), 1.0).residuals(MS, x, sigma, conds, 2)
        double = control.copy().set_cond_hint(hint(), 2.0).residuals(MS, x, sigma, conds, 2)
        assert torch.equal(model.apply_model(x, sigma, control=zero, **conds), plain)
        assert not torch.allclose(model.apply_model(x, sigma, control=full, **conds), plain, atol=1e-3)
    for a, b in zip(residual_tensors(full), residual_tensors(double)):
        assert torch.allclose(a * 2, b)


def test_timestep_range_switches_the_control_on_and_off(controlnet_file):
    control = load_control_file(controlnet_file, "cpu", torch.float32).set_cond_hint(hint(), 1.0, (0.2, 0.6))
    x, _, conds = inputs()
    start, end = MS.percent_to_sigma(0.2), MS.percent_to_sigma(0.6)
    for sigma, active in ((start + 0.5, False), (start - 0.01, True), (end + 0.01, True), (end - 0.01, False)):
        result = control.residuals(MS, x, torch.full((2,), sigma), conds, 2)
        assert (result is not None) == active, sigma


def test_chained_controls_add_up_and_an_inactive_link_passes_the_rest_on(controlnet_file, tmp_path):
    first = load_control_file(controlnet_file, "cpu", torch.float32).set_cond_hint(hint(3), 0.8)
    other = load_control_file(fx.write_controlnet(tmp_path / "b.safetensors", "sd1", seed=9), "cpu", torch.float32)
    second = other.copy().set_cond_hint(hint(4), 1.5).set_previous_controlnet(first)
    x, sigma, conds = inputs()
    with torch.no_grad():
        a = first.residuals(MS, x, sigma, conds, 2)
        b = other.copy().set_cond_hint(hint(4), 1.5).residuals(MS, x, sigma, conds, 2)
        both = second.residuals(MS, x, sigma, conds, 2)
        late = other.copy().set_cond_hint(hint(4), 1.5, (0.9, 1.0)).set_previous_controlnet(first)
        only_first = late.residuals(MS, x, sigma, conds, 2)
    for x_, y_, z_ in zip(residual_tensors(a), residual_tensors(b), residual_tensors(both)):
        assert torch.allclose(x_ + y_, z_)
    for x_, y_ in zip(residual_tensors(a), residual_tensors(only_first)):
        assert torch.equal(x_, y_)
    assert second.previous is first and first.previous is None


def test_hint_batches_follow_comfyuis_broadcast():
    frames = torch.arange(3.0).reshape(3, 1, 1, 1)
    assert broadcast_hint(frames[:1], 4, 2).shape[0] == 1  # one image serves the whole batch
    assert broadcast_hint(frames, 4, 2).flatten().tolist() == [0, 1, 0, 1]  # each chunk: the first images
    assert broadcast_hint(frames, 10, 2).flatten().tolist() == [0, 1, 2, 0, 1] * 2  # repeated to the chunk size


class RecordingModel:
    """A toy model recording each call's batch size and control (the residuals are returned as-is)."""

    def __init__(self):
        self.model_sampling = MS
        self.calls = []

    def apply_model(self, x, sigma, c_crossattn, control=None, transformer_options=None):
        self.calls.append((x.shape[0], control))
        return x * 0


@dataclasses.dataclass(eq=False)
class FakeControl:
    name: str

    def residuals(self, model_sampling, x, sigma, model_conds, chunks):
        return (self.name, x.shape[0], chunks)


def cond(control=None, **options):
    return Cond(model_conds={"c_crossattn": torch.zeros(1, 2, 3)}, control=control, options=options)


def test_runs_are_batched_only_when_they_share_a_control():
    shared, other = FakeControl("a"), FakeControl("b")
    model, x = RecordingModel(), torch.zeros(1, 4, 2, 2)
    calc_cond_batch(model, [[cond(shared)], [cond(shared)]], x, torch.ones(1))
    assert model.calls == [(2, ("a", 2, 2))]
    model.calls.clear()
    calc_cond_batch(model, [[cond(shared)], [cond(other)], [cond()]], x, torch.ones(1))
    assert model.calls == [(1, ("a", 1, 1)), (1, ("b", 1, 1)), (1, None)]


def test_old_apply_node_controls_are_shared_with_a_negative_that_has_none():
    control = FakeControl("c")
    positive = [cond(control, control_apply_to_uncond=True)]
    negative = [cond(), cond(area=(8, 8, 0, 0))]
    share_control_with_uncond(positive, negative)
    assert negative[0].control is control and negative[1].control is None
    advanced = [cond(control, control_apply_to_uncond=False)]
    untouched = [cond()]
    share_control_with_uncond(advanced, untouched)
    assert untouched[0].control is None
    own = FakeControl("own")
    has_one = [cond(own)]
    share_control_with_uncond(positive, has_one)
    assert has_one[0].control is own


def test_copies_share_the_network_but_not_the_hint(controlnet_file):
    base = load_control_file(controlnet_file, "cpu", torch.float32)
    a = base.copy().set_cond_hint(hint(1), 0.3, (0.1, 0.9))
    b = base.copy().set_cond_hint(hint(2), 0.7)
    assert a.control_model is b.control_model is base.control_model
    assert base.hint is None and a.strength == 0.3 and a.percent_range == (0.1, 0.9) and b.percent_range == (0, 1)


# -- Control-LoRAs ---------------------------------------------------------------------------------------------


def merged_controlnet(lora: dict, unet: dict) -> dict:
    """The plain LDM ControlNet a Control-LoRA makes of the UNet whose file tensors are `unet`, worked out by
    hand: the file's full tensors, and the UNet's weight plus up @ down for each factored one."""
    out = {}
    for key, value in lora.items():
        if key == "lora_controlnet" or key.endswith(".down"):
            continue
        if key.endswith(".up"):
            key = key[:-len(".up")] + ".weight"
            weight = unet[ck.UNET + key]
            down = lora[key[:-len(".weight")] + ".down"]
            value = weight + (value.flatten(1) @ down.flatten(1)).reshape(weight.shape)
        out[fx.CONTROL + key] = value
    return out


@pytest.fixture(scope="module")
def control_lora_file(tmp_path_factory):
    return fx.write_control_lora(tmp_path_factory.mktemp("cl") / "cl.safetensors", "sd1", seed=5)


def test_a_control_lora_runs_as_the_controlnet_it_makes_of_the_unet(tmp_path, sd1, control_lora_file):
    model, tensors = sd1
    lora = load_control_file(control_lora_file, "cpu", torch.float32)
    save_file(merged_controlnet(floats(control_lora_file), tensors), str(tmp_path / "merged.safetensors"))
    plain = load_control_file(tmp_path / "merged.safetensors", "cpu", torch.float32)
    assert isinstance(lora, ControlLora) and lora.control_model is None  # nothing is built before a UNet
    x, sigma, conds = inputs()
    with torch.no_grad():
        ours = model.apply_model(x, sigma, control=lora.copy().set_cond_hint(hint(), 0.7).residuals(
            MS, x, sigma, conds, 2), **conds)
        theirs = model.apply_model(x, sigma, control=plain.copy().set_cond_hint(hint(), 0.7).residuals(
            MS, x, sigma, conds, 2), **conds)
        assert not torch.allclose(ours, model.apply_model(x, sigma, **conds), atol=1e-3)
    assert_close(ours, theirs, 1e-4)
    built = next(iter(lora.networks.values()))[1].state_dict()
    for key, value in plain.control_model.state_dict().items():
        assert_close(built[key], value)


def test_a_control_lora_gives_a_unet_without_middle_block_a_lone_middle_res_block(tmp_path):
    layout = ck.UNetLayout(32, (1, 2), 1, (1, 0), 1, context_dim=32, linear_proj=False)
    shapes = {k: v for k, v in ck.unet_shapes(layout).items() if not k.startswith(ck.UNET + "middle_block.")}
    _, spec = detect_unet(shapes, ck.UNET, "test")
    torch.manual_seed(0)
    model = DiffusionModel(UNet2DConditionModel(**convert.unet_config(spec)).eval(), "sd1", "eps", 0.18215)
    path = tmp_path / "cl.safetensors"
    ck.save(path, ck.fill(fx.control_lora_shapes(layout, middle=False), seed=6))
    control = load_control_file(path, "cpu", torch.float32).set_cond_hint(hint(), 1.0)
    x, sigma, conds = inputs()
    with torch.no_grad():
        controlled = model.apply_model(x, sigma, control=control.residuals(MS, x, sigma, conds, 2), **conds)
        assert not torch.allclose(controlled, model.apply_model(x, sigma, **conds), atol=1e-3)
    assert model.unet.mid_block is None
    middle = control.control_model.mid_block
    assert len(middle.resnets) == 1 and not middle.attentions
    assert torch.equal(middle.resnets[0].conv2.weight, floats(path)["middle_block.0.out_layers.3.weight"])


class AddOne:
    """A weight patch in the model manager's protocol (as LoRAs are): adds one to the UNet's conv_in weight."""

    def deltas(self, target, params):
        return {"conv_in.weight": torch.ones_like(params["conv_in.weight"])}


def test_control_lora_networks_are_built_once_per_unet_and_its_patches(tmp_path, sd1, control_lora_file):
    model, _ = sd1
    manager = ModelManager(torch.device("cpu"))
    model = DiffusionModel(model.unet, "sd1", "eps", model.latent_scale, manager=manager)
    patched = model.clone()
    patched.patches = [(AddOne(), 1.0)]
    other = load_checkpoint(ck.write_sd15(tmp_path / "other.safetensors", seed=1), "cpu", torch.float32,
                            load_clip=False, load_vae=False)
    other = DiffusionModel(other.unet, "sd1", "eps", other.latent_scale_factor, manager=manager)
    base = load_control_file(control_lora_file, "cpu", torch.float32)
    base.manager = manager
    x, sigma, conds = inputs()

    def network_for(diffusion_model, control=None):
        control = control or base.copy().set_cond_hint(hint(), 1.0)
        with torch.no_grad():
            diffusion_model.apply_model(x, sigma, control=control.residuals(MS, x, sigma, conds, 2), **conds)
        return control.control_model

    first = network_for(model)
    assert network_for(model) is first  # another copy of the same file, the same UNet: no rebuild
    on_other = network_for(other)
    assert on_other is not first and not torch.equal(on_other.conv_in.weight, first.conv_in.weight)
    on_patched = network_for(patched)
    assert on_patched is not first
    delta = on_patched.conv_in.weight - first.conv_in.weight
    assert_close(delta, torch.ones_like(delta))  # built from the UNet as the LoRA'd clone runs it
    assert network_for(model) is not on_patched and network_for(other) is on_other
    assert len(base.networks) == 2  # one per UNet, for the patches it ran with last


def test_a_control_lora_made_for_another_family_is_a_clear_error(tmp_path, sd1):
    model, _ = sd1
    path = fx.write_control_lora(tmp_path / "xl-canny.safetensors", "sdxl")
    control = load_control_file(path, "cpu", torch.float32).set_cond_hint(hint(), 1.0)
    x, sigma, conds = inputs()
    with pytest.raises(CheckpointError, match=r"xl-canny.safetensors: Control-LoRA does not fit the model"):
        model.apply_model(x, sigma, control=control.residuals(MS, x, sigma, conds, 2), **conds)
