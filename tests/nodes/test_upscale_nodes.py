"""UpscaleModelLoader / ImageUpscaleWithModel on tiny ESRGAN and RealESRGAN Compact files."""
from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from engine import context, folders, tiling
from nodes import upscale
from tests.fixtures.upscalers import compact_state_dict, esrgan_state_dict, write_compact, write_esrgan
from tests.nodes.test_latent_nodes import assert_matches_capture

CPU = torch.device("cpu")


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "_active", folders.Folders(tmp_path, input_dir=tmp_path, output_dir=tmp_path,
                                                            temp_dir=tmp_path, user_dir=tmp_path))
    root = tmp_path / "models" / "upscale_models"
    root.mkdir(parents=True)
    return root


@pytest.fixture
def progress():
    """Progress reports (value, total) of the node run under a NodeContext, and its interrupt flag."""
    reports, interrupt = [], threading.Event()
    token = context.activate(context.NodeContext("p", "7", "7", interrupt, lambda node, v, t: reports.append((v, t)),
                                                 lambda *a: None))
    yield reports, interrupt
    context.deactivate(token)


def load(name: str):
    return upscale.UpscaleModelLoader().load_model(name)[0]


def run(model, image):
    return upscale.ImageUpscaleWithModel().upscale(model, image)[0]


@pytest.mark.parametrize("name", sorted(upscale.NODE_CLASS_MAPPINGS))
def test_declaration_matches_upstream(name, models):
    assert_matches_capture(upscale, name)


def test_loader_lists_the_folder(models):
    write_compact(models / "x2.pth")
    assert upscale.UpscaleModelLoader.INPUT_TYPES()["required"]["model_name"][1]["options"] == ["x2.pth"]


@pytest.mark.parametrize("file,write,scale,arch", [
    ("esrgan-old-x2.pth", write_esrgan, 2, "ESRGAN"),
    ("esrgan-old-x4.pth", write_esrgan, 4, "ESRGAN"),
    ("esrgan-new-x4.safetensors", lambda p, s: write_esrgan(p, s, new_layout=True), 4, "ESRGAN"),
    ("esrgan-new-x2.pth", lambda p, s: write_esrgan(p, s, new_layout=True), 2, "ESRGAN"),
    ("compact-x2.pth", write_compact, 2, "Compact"),
    ("compact-x4.safetensors", write_compact, 4, "Compact"),
])
def test_each_fixture_loads_and_scales(models, file, write, scale, arch):
    write(models / file, scale)
    model = load(file)
    assert model.architecture.id == arch and model.scale == scale
    out = run(model, torch.rand(2, 12, 20, 3))
    assert out.shape == (2, 12 * scale, 20 * scale, 3)
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0.01
    assert load(file) is model  # cached while the file is unchanged


def test_old_and_new_esrgan_layouts_hold_the_same_network(models):
    # Same seed, same parameter order: the two files differ only in their key names.
    write_esrgan(models / "old.pth", 4, seed=3)
    write_esrgan(models / "new.pth", 4, seed=3, new_layout=True)
    image = torch.rand(1, 10, 14, 3)
    assert torch.equal(run(load("old.pth"), image), run(load("new.pth"), image))


def test_compact_with_a_silent_last_conv_is_nearest_upscaling(models):
    # SRVGGNetCompact adds its pixel-shuffled output to the nearest-upscaled input.
    sd = compact_state_dict(scale=4)
    last = max(k for k in sd if k.startswith("body.") and k.endswith(".bias"))
    sd[last].zero_()
    sd[last.replace(".bias", ".weight")].zero_()
    save_file(sd, str(models / "silent.safetensors"))
    image = torch.rand(1, 9, 13, 3)
    expected = F.interpolate(image.movedim(-1, 1), scale_factor=4, mode="nearest").movedim(1, -1)
    assert torch.allclose(run(load("silent.safetensors"), image), expected, atol=1e-6)


def test_data_parallel_prefix_is_stripped_only_for_swinir_keys(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({upscale.DATA_PARALLEL_MARKER: torch.ones(2), "module.other": torch.zeros(1)}, str(path))
    assert set(upscale.read_state_dict(path)) == {"layers.0.residual_group.blocks.0.norm1.weight", "other"}
    save_file({"module.other": torch.zeros(1)}, str(path))
    assert set(upscale.read_state_dict(path)) == {"module.other"}


def test_tiled_matches_untiled(models, monkeypatch, progress):
    # Kernels with only their centre tap: each output pixel depends on its own input pixel alone, so
    # blending tiles must reproduce the whole-image result up to float rounding.
    sd = compact_state_dict(scale=2, num_conv=2)
    for key, value in sd.items():
        if value.dim() == 4:
            centre = value[:, :, 1, 1].clone()
            value.zero_()[:, :, 1, 1] = centre * 3
    save_file(sd, str(models / "pointwise.safetensors"))
    model = load("pointwise.safetensors")
    image = torch.rand(2, 50, 70, 3)
    whole = run(model, image)
    monkeypatch.setattr(upscale, "TILE", 24)
    monkeypatch.setattr(upscale, "OVERLAP", 8)
    tiled = run(model, image)
    nearest = F.interpolate(image.movedim(-1, 1), scale_factor=2, mode="nearest").movedim(1, -1)
    assert (whole - nearest).abs().mean() > 0.01  # the network does change the image
    assert torch.allclose(tiled, whole, atol=1e-5)
    reports, _ = progress
    tiles = 2 * tiling.tile_count(70, 50, 24, 8)
    assert tiles > 2 and reports[-tiles:] == [(i, tiles) for i in range(1, tiles + 1)]


def test_tiling_a_3x3_network_stays_close(models, monkeypatch):
    write_compact(models / "c.pth", 2, num_conv=2)
    model = load("c.pth")
    image = torch.rand(1, 50, 70, 3)
    whole = run(model, image)
    monkeypatch.setattr(upscale, "TILE", 24)
    monkeypatch.setattr(upscale, "OVERLAP", 8)
    tiled = run(model, image)
    # Tiles see zero padding at their cut edges, which the blend weights down: small differences there only.
    assert (tiled - whole).abs().mean() < 0.02 and (tiled - whole).abs().max() < 0.5


def test_progress_counts_tiles_of_every_image(models, monkeypatch, progress):
    write_esrgan(models / "e.pth", 2)
    monkeypatch.setattr(upscale, "TILE", 16)
    monkeypatch.setattr(upscale, "OVERLAP", 4)
    run(load("e.pth"), torch.rand(3, 20, 30, 3))
    reports, _ = progress
    total = 3 * tiling.tile_count(30, 20, 16, 4)  # 2 rows x 3 columns per image
    assert total == 18 and reports == [(i, total) for i in range(1, total + 1)]


def test_interrupt_is_checked_per_tile(models, progress):
    write_compact(models / "c.pth")
    reports, interrupt = progress
    interrupt.set()
    with pytest.raises(context.Interrupted):
        run(load("c.pth"), torch.rand(1, 8, 8, 3))
    assert reports == []


class FakeModel:
    """Stands in for a descriptor: 2x nearest, out of memory on tiles wider than `limit`, records moves."""

    scale, output_channels = 2, 3

    def __init__(self, limit: int):
        self.limit, self.moves, self.tiles = limit, [], []

    def to(self, device):
        self.moves.append(torch.device(device))
        return self

    def __call__(self, x):
        if x.shape[-1] > self.limit:
            raise torch.cuda.OutOfMemoryError("fake")
        self.tiles.append(tuple(x.shape[-2:]))
        return x.repeat_interleave(2, 2).repeat_interleave(2, 3)


def test_out_of_memory_halves_the_tile_and_restarts_progress(progress):
    model = FakeModel(limit=256)
    image = torch.rand(1, 40, 600, 3)
    out = upscale.upscale_image(model, image, CPU, CPU)
    assert torch.allclose(out, image.repeat_interleave(2, 1).repeat_interleave(2, 2))
    assert max(w for _, w in model.tiles) == 256  # 512 failed, 256 worked
    reports, _ = progress
    tiles = tiling.tile_count(600, 40, 256, upscale.OVERLAP)
    assert reports[-1] == (tiles, tiles)
    assert model.moves == [CPU, CPU]  # to the compute device, then back to the offload device


def test_out_of_memory_below_the_smallest_tile_is_raised():
    with pytest.raises(torch.cuda.OutOfMemoryError):
        upscale.upscale_image(FakeModel(limit=64), torch.rand(1, 8, 600, 3), CPU, CPU)


def test_bad_files_give_clear_errors(models):
    (models / "junk.pth").write_bytes(b"not a model at all")
    with pytest.raises(upscale.UpscaleModelError, match="junk.pth: cannot read"):
        load("junk.pth")
    save_file({"some.weight": torch.zeros(2, 2)}, str(models / "other.safetensors"))
    with pytest.raises(upscale.UpscaleModelError, match="other.safetensors: not an upscale model architecture"):
        load("other.safetensors")
    with pytest.raises(FileNotFoundError):
        load("absent.pth")
