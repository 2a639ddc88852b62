"""fp8 weight storage: UNETLoader keeps an fp8 file's linear weights in fp8 (and narrows any model's with its fp8
weight_dtype choices), computing each layer in the compute dtype from them, as ComfyUI's manual cast does; T5-XXL
text encoders from fp8 files likewise."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import folders
from engine.models.cast import CastLinear, FP8_DTYPES, compute_dtype, narrow_storage
from nodes import loaders
from tests.fixtures.checkpoints import write_sd15
from tests.fixtures.flux import write_flux


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "diffusion_models"
    folder.mkdir(parents=True)
    monkeypatch.setattr(folders, "_active", folders.Folders(tmp_path, input_dir=tmp_path, output_dir=tmp_path,
                                                            temp_dir=tmp_path, user_dir=tmp_path))
    return folder


def stored(network: torch.nn.Module) -> dict[torch.dtype, int]:
    """Bytes of parameters per dtype."""
    out: dict[torch.dtype, int] = {}
    for p in network.parameters():
        out[p.dtype] = out.get(p.dtype, 0) + p.numel() * p.element_size()
    return out


def test_narrowed_layers_compute_from_the_fp8_values():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    network.register_parameter("token", torch.nn.Parameter(torch.randn(1, 8).to(torch.float8_e4m3fn),
                                                           requires_grad=False))
    reference = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    reference.load_state_dict({k: v for k, v in network.state_dict().items() if k != "token"})
    for layer in (reference[0], reference[2]):  # the same weights, rounded to fp8 and widened again
        layer.weight.data = layer.weight.data.to(torch.float8_e4m3fn).float()
    narrow_storage(network, torch.float32, torch.float8_e4m3fn)
    assert [type(m) for m in network] == [CastLinear, torch.nn.LayerNorm, CastLinear]
    assert network[0].weight.dtype == torch.float8_e4m3fn and network[0].bias.dtype == torch.float32
    assert network.token.dtype == torch.float32  # fp8 tensors outside Linear layers are widened
    assert compute_dtype(network) == torch.float32
    x = torch.randn(3, 8)
    assert torch.equal(network(x), reference(x))


def test_fp8_file_stays_fp8_and_bf16_file_narrows_on_request(models):
    write_flux(models / "fp8.safetensors", dtype=torch.float8_e4m3fn)
    write_flux(models / "bf16.safetensors")
    (fp8,) = loaders.UNETLoader().load_unet("fp8.safetensors", "default")
    (wide,) = loaders.UNETLoader().load_unet("bf16.safetensors", "default")
    (narrow,) = loaders.UNETLoader().load_unet("bf16.safetensors", "fp8_e5m2")
    assert not any(dtype in FP8_DTYPES for dtype in stored(wide.unet))
    for model, dtype in ((fp8, torch.float8_e4m3fn), (narrow, torch.float8_e5m2)):
        sizes = stored(model.unet)
        linear = sum(m.weight.numel() for m in model.unet.modules() if isinstance(m, CastLinear))
        assert sizes[dtype] == linear and linear > 0.9 * sum(p.numel() for p in model.unet.parameters())
        assert model.dtype == torch.float32  # computed in fp32 on this CPU
    assert sum(stored(narrow.unet).values()) < 0.3 * sum(stored(wide.unet).values())


def test_sd_unet_narrows_its_linear_layers(models, tmp_path):
    path = write_sd15(tmp_path / "sd15.safetensors")
    unet = {k: v for k, v in load_file(str(path)).items() if k.startswith("model.diffusion_model.")}
    save_file(unet, str(models / "sd15_unet.safetensors"))
    (model,) = loaders.UNETLoader().load_unet("sd15_unet.safetensors", "fp8_e4m3fn")
    assert torch.float8_e4m3fn in stored(model.unet) and model.dtype == torch.float32
    assert model.unet.conv_in.weight.dtype == torch.float32


def test_fp8_t5_keeps_its_weights_fp8_and_encodes_as_widened(tmp_path):
    from engine.models.t5 import load_t5_file
    from tests.fixtures.t5 import write_t5

    narrow = write_t5(tmp_path / "t5_fp8.safetensors", dtype=torch.float8_e4m3fn)
    save_file({k: v.float() for k, v in load_file(str(narrow)).items()}, str(tmp_path / "t5_wide.safetensors"))
    fp8 = load_t5_file(narrow, "cpu", torch.float32).model
    wide = load_t5_file(tmp_path / "t5_wide.safetensors", "cpu", torch.float32).model
    kinds = {name.rsplit(".", 1)[-1]: module.weight.dtype for name, module in fp8.named_modules()
             if isinstance(module, torch.nn.Linear)}
    assert kinds == {"q": torch.float8_e4m3fn, "k": torch.float8_e4m3fn, "v": torch.float8_e4m3fn,
                     "o": torch.float8_e4m3fn, "wi_0": torch.float8_e4m3fn, "wi_1": torch.float8_e4m3fn,
                     "wo": torch.float32}  # transformers casts the feed-forward input to wo's dtype
    ids = torch.tensor([[37, 1782, 21, 8, 1]])
    with torch.no_grad():
        assert torch.equal(fp8(ids).last_hidden_state, wide(ids).last_hidden_state)
