"""Image-conditioning nodes: declarations against upstream's /object_info, and what they put in the conditioning
(InpaintModelConditioning, InstructPixToPixConditioning, ReferenceLatent, FluxKontextMultiReferenceLatentMethod),
on the MODEL (DifferentialDiffusion) or in the image (FluxKontextImageScale, ImageStitch)."""
from __future__ import annotations

import copy

import pytest
import torch

from engine import Settings, folders
from engine.folders import Folders
from engine.models.diffusion import DiffusionModel
from engine.sampling.differential_diffusion import threshold_mask
from nodes import conditioning, differential_diffusion, edit_model, flux, image
from nodes.loaders import CheckpointLoaderSimple
from tests.fixtures import checkpoints as fx
from tests.nodes.test_latent_nodes import assert_matches_capture, assert_same

DECLARED = [(conditioning, "InpaintModelConditioning"), (conditioning, "InstructPixToPixConditioning"),
            (differential_diffusion, "DifferentialDiffusion"), (edit_model, "ReferenceLatent"),
            (flux, "FluxKontextImageScale"), (flux, "FluxKontextMultiReferenceLatentMethod"),
            (image, "ImageStitch")]


@pytest.mark.parametrize("module,name", DECLARED, ids=[name for _, name in DECLARED])
def test_declaration_matches_upstream(module, name):
    assert_matches_capture(module, name)


def run(module, name: str, *args):
    """Call a node as the executor does, checking that it left its value inputs (tensors, conditionings,
    latents) untouched."""
    values = [a for a in args if isinstance(a, (torch.Tensor, list, dict))]
    before = copy.deepcopy(values)
    node = module.NODE_CLASS_MAPPINGS[name]()
    out = getattr(node, node.FUNCTION)(*args)
    assert_same(before, values)
    return out


def cond(value: float = 1.0, **options):
    return [[torch.full((1, 2, 3), value), options]]


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    active = Folders.from_settings(Settings(base_directory=base, cpu=True))
    active.create_dirs()
    previous, folders._active = folders._active, active
    try:
        fx.write_sd15(base / "models" / "checkpoints" / "inpaint.safetensors", inpaint=True)
        yield CheckpointLoaderSimple().load_checkpoint("inpaint.safetensors")[2]
    finally:
        folders._active = previous


def pixels_and_mask():
    """A 70 x 69 image (cropped to 64 x 64 at offset (3, 2)) and a soft mask with values either side of 0.5."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 70, 69, 3, generator=g)
    mask = torch.zeros(1, 70, 69)
    mask[:, 20:50, 10:40] = 0.8
    mask[:, 50:60, 10:40] = 0.5  # rounds to 0: kept
    mask[:, 5:15, 45:60] = 0.3
    return pixels, mask


def test_inpaint_model_conditioning_values(vae):
    pixels, mask = pixels_and_mask()
    positive, negative = cond(1.0, strength=0.5), cond(2.0)
    out_pos, out_neg, latent = run(conditioning, "InpaintModelConditioning", positive, negative, pixels, vae, mask,
                                   True)
    crop = pixels[:, 3:67, 2:66]
    crop_mask = mask[:, 3:67, 2:66]
    greyed = torch.where((crop_mask > 0.5).unsqueeze(-1), torch.full_like(crop, 0.5), crop)
    expected_image = vae.encode(greyed)
    assert expected_image.shape == (1, 4, 8, 8)
    for out, source in ((out_pos, positive), (out_neg, negative)):
        [[tensor, options]] = out
        assert tensor is source[0][0] and options is not source[0][1]
        assert options.keys() == source[0][1].keys() | {"concat_latent_image", "concat_mask"}
        assert torch.allclose(options["concat_latent_image"], expected_image, atol=1e-5)
        assert torch.equal(options["concat_mask"], crop_mask.unsqueeze(1))
    assert out_pos[0][1]["strength"] == 0.5
    assert torch.allclose(latent["samples"], vae.encode(crop), atol=1e-5)
    assert torch.equal(latent["noise_mask"], crop_mask.unsqueeze(1))
    assert not torch.allclose(latent["samples"], expected_image, atol=1e-3)  # the latent is the unmasked image

    _, _, latent = run(conditioning, "InpaintModelConditioning", positive, negative, pixels, vae, mask, False)
    assert latent.keys() == {"samples"}


def test_inpaint_model_conditioning_resizes_the_mask_to_the_image(vae):
    pixels = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    small = torch.zeros(1, 8, 8)
    small[:, 2:6, 2:6] = 1.0
    (pos, _, latent) = run(conditioning, "InpaintModelConditioning", cond(), cond(), pixels, vae, small, True)
    mask = pos[0][1]["concat_mask"]
    assert mask.shape == (1, 1, 64, 64) and torch.equal(latent["noise_mask"], mask)
    assert mask[0, 0, 32, 32] == 1 and mask[0, 0, 2, 2] == 0


def test_instruct_pix2pix_values(vae):
    pixels = torch.rand(2, 70, 69, 3, generator=torch.Generator().manual_seed(2))
    positive, negative = cond(1.0), cond(2.0, guidance=3.0)
    out_pos, out_neg, latent = run(conditioning, "InstructPixToPixConditioning", positive, negative, pixels, vae)
    expected = vae.encode(pixels[:, 3:67, 2:66])
    for out, source in ((out_pos, positive), (out_neg, negative)):
        [[tensor, options]] = out
        assert tensor is source[0][0]
        assert options.keys() == source[0][1].keys() | {"concat_latent_image"}
        assert torch.allclose(options["concat_latent_image"], expected, atol=1e-5)
    assert out_neg[0][1]["guidance"] == 3.0
    assert latent.keys() == {"samples"} and latent["samples"].shape == (2, 4, 8, 8) and not latent["samples"].any()


def test_reference_latents_chain_into_a_new_list_each_time():
    first, second = {"samples": torch.zeros(1, 16, 4, 4)}, {"samples": torch.ones(1, 16, 2, 6)}
    base = cond(1.0) + cond(2.0, guidance=3.5)
    (one,) = run(edit_model, "ReferenceLatent", base, first)
    (two,) = run(edit_model, "ReferenceLatent", one, second)
    for entry in one:
        assert [r is first["samples"] for r in entry[1]["reference_latents"]] == [True]
    for entry, source in zip(two, base):
        refs = entry[1]["reference_latents"]
        assert len(refs) == 2 and refs[0] is first["samples"] and refs[1] is second["samples"]
        assert entry[0] is source[0]
    assert two[1][1]["guidance"] == 3.5 and "reference_latents" not in base[0][1]
    (same,) = run(edit_model, "ReferenceLatent", base)  # no latent: the conditioning passes through
    assert same is base


@pytest.mark.parametrize("method,stored", [("offset", "offset"), ("index", "index"), ("uxo/uno", "uxo")])
def test_kontext_reference_latents_method(method, stored):
    base = cond(1.0, reference_latents=[torch.zeros(1, 16, 2, 2)])
    (out,) = run(flux, "FluxKontextMultiReferenceLatentMethod", base, method)
    assert out[0][1]["reference_latents_method"] == stored and "reference_latents_method" not in base[0][1]
    assert out[0][1]["reference_latents"] is base[0][1]["reference_latents"]


@pytest.mark.parametrize("height,width,expected", [
    (512, 512, (1024, 1024)),  # square
    (480, 640, (1184, 880)),  # 4:3 landscape (1.333; 1184 / 880 = 1.345)
    (1080, 1920, (1392, 752)),  # 16:9 (1.778; 1392 / 752 = 1.851 beats 1328 / 800 = 1.66)
    (1000, 400, (672, 1568)),  # taller than any: the tallest
    (300, 400, (1184, 880)),
    (600, 400, (832, 1248)),  # 2:3 portrait
])
def test_kontext_image_scale_picks_the_nearest_preferred_size(height, width, expected):
    picture = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(3))
    (out,) = run(flux, "FluxKontextImageScale", picture)
    assert (out.shape[2], out.shape[1]) == expected and out.shape[3] == 3


def test_kontext_image_scale_crops_to_the_aspect_before_resizing():
    picture = torch.zeros(1, 100, 300, 3)
    picture[:, :, 100:200] = 1.0  # the centre third is white; the crop to 1568:672 cuts 33 px off each side
    (out,) = run(flux, "FluxKontextImageScale", picture)
    assert out.shape[1:3] == (672, 1568)
    assert out[0, 336, 784].min() > 0.99 and out[0, 336, 5].max() < 0.01
    assert out[0, 336, 1568 * 67 // 233 - 20].max() < 0.01 and out[0, 336, 1568 * 67 // 233 + 20].min() > 0.99


def solid(value, height, width, batch=1, channels=3):
    return torch.full((batch, height, width, channels), float(value))


@pytest.mark.parametrize("direction", ["right", "left", "down", "up"])
def test_stitch_without_resizing_pads_and_orders_by_direction(direction):
    first, second = solid(0.2, 4, 6), solid(0.8, 2, 3)
    (out,) = run(image, "ImageStitch", first, direction, False, 0, "white", second)
    horizontal = direction in ("left", "right")
    assert out.shape == ((1, 4, 9, 3) if horizontal else (1, 6, 6, 3))
    # image2 centred along the other side, padded with white (the spacing colour's level)
    if horizontal:
        placed = out[:, :, 6:] if direction == "right" else out[:, :, :3]
        kept = out[:, :, :6] if direction == "right" else out[:, :, 3:]
        assert torch.equal(placed[:, 1:3], solid(0.8, 2, 3)) and (placed[:, [0, 3]] == 1.0).all()
    else:
        placed = out[:, 4:] if direction == "down" else out[:, :2]
        kept = out[:, :4] if direction == "down" else out[:, 2:]
        assert torch.equal(placed[:, :, 1:4], solid(0.8, 2, 3)) and (placed[:, :, [0, 4, 5]] == 1.0).all()
    assert torch.equal(kept, first)


@pytest.mark.parametrize("direction,shape", [("right", (1, 4, 16, 3)), ("left", (1, 4, 16, 3)),
                                             ("down", (1, 6, 6, 3)), ("up", (1, 6, 6, 3))])
def test_stitch_matching_sizes_scales_image2_to_image1(direction, shape):
    first, second = solid(0.2, 4, 6), solid(0.8, 2, 5)
    (out,) = run(image, "ImageStitch", first, direction, True, 0, "black", second)
    # image2 keeps its 5:2 aspect: 10 x 4 beside, 6 x 2 (int(6 / 2.5)) below
    assert out.shape == shape
    second_part = {"right": out[:, :, 6:], "left": out[:, :, :10], "down": out[:, 4:], "up": out[:, :2]}[direction]
    assert torch.allclose(second_part, torch.full_like(second_part, 204 / 255))  # lanczos through 8 bits


@pytest.mark.parametrize("color,rgb", [("white", (1, 1, 1)), ("black", (0, 0, 0)), ("red", (1, 0, 0)),
                                       ("green", (0, 1, 0)), ("blue", (0, 0, 1))])
def test_stitch_spacing_is_even_and_coloured(color, rgb):
    first, second = solid(0.2, 4, 6), solid(0.8, 4, 3)
    (out,) = run(image, "ImageStitch", first, "left", False, 3, color, second)
    assert out.shape == (1, 4, 13, 3)  # 3 rounds up to 4
    assert torch.equal(out[:, :, :3], second) and torch.equal(out[:, :, 7:], first)
    assert torch.equal(out[:, :, 3:7], torch.tensor(rgb, dtype=torch.float32).expand(1, 4, 4, 3))
    (out,) = run(image, "ImageStitch", first, "down", False, 2, color, solid(0.8, 1, 6))
    assert out.shape == (1, 7, 6, 3) and torch.equal(out[:, 4:6], torch.tensor(rgb, dtype=torch.float32)
                                                      .expand(1, 2, 6, 3))


def test_stitch_batches_channels_and_missing_image2():
    first = torch.rand(3, 4, 4, 3, generator=torch.Generator().manual_seed(4))
    second = solid(0.5, 4, 2, channels=4)
    (out,) = run(image, "ImageStitch", first, "right", False, 2, "red", second)
    assert out.shape == (3, 4, 8, 4)
    assert torch.equal(out[..., :4, :3], first) and (out[..., :4, 3] == 1).all()  # image1 gains an opaque alpha
    assert torch.equal(out[:, :, 6:], second.expand(3, -1, -1, -1))  # the last image2 repeats
    assert torch.equal(out[0, 0, 4], torch.tensor([1.0, 0.0, 0.0, 1.0]))  # red spacer with alpha
    (same,) = run(image, "ImageStitch", first, "right", True, 0, "white")
    assert same is first


def test_differential_diffusion_patches_a_clone():
    model = DiffusionModel(None, "sd1", "eps", 0.18215)
    (patched,) = run(differential_diffusion, "DifferentialDiffusion", model, 0.5)
    assert patched is not model and "denoise_mask_function" not in model.model_options
    hook = patched.model_options["denoise_mask_function"]
    assert patched.clone().model_options["denoise_mask_function"] is not None  # clones keep it
    mask = torch.linspace(0, 1, 11)
    options = {"model_sampling": model.model_sampling, "sigmas": torch.stack((model.model_sampling.sigmas[999],
                                                                             torch.tensor(0.0)))}
    sigma = model.model_sampling.sigmas[499].reshape(1)
    assert torch.equal(hook(sigma, mask, extra_options=options), threshold_mask(sigma, mask, options, 0.5))
    assert not torch.equal(hook(sigma, mask, extra_options=options), threshold_mask(sigma, mask, options))
    (default,) = run(differential_diffusion, "DifferentialDiffusion", model)
    assert torch.equal(default.model_options["denoise_mask_function"](sigma, mask, extra_options=options),
                       threshold_mask(sigma, mask, options))
