"""Inpainting / instruct-pix2pix conditioning and differential diffusion through the real app on tiny SD1.5
checkpoints: what the UNet's extra input channels receive, which noise mask the sampler gets, and the runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.models.diffusion import DiffusionModel
from engine.models.load import load_checkpoint
from engine.models.manager import ModelManager
from engine.sampling import ksampler
from engine.sampling.run import ksample
from nodes.differential_diffusion import DifferentialDiffusion
from nodes.loaders import CheckpointLoaderSimple
from tests.e2e.test_families import place, run_ok
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures import checkpoints as fx

SD1_SCALE = 0.18215


@pytest.fixture
def recorded(monkeypatch):
    """The c_concat of every UNet call and the denoise mask of every sampler run."""
    calls = {"c_concat": [], "denoise_mask": []}
    apply_model, sample = DiffusionModel.apply_model, ksampler.sample

    def recording_apply(self, x, sigma, **conds):
        calls["c_concat"].append(conds.get("c_concat"))
        return apply_model(self, x, sigma, **conds)

    def recording_sample(*args, **kwargs):
        calls["denoise_mask"].append(kwargs.get("denoise_mask"))
        return sample(*args, **kwargs)

    monkeypatch.setattr(DiffusionModel, "apply_model", recording_apply)
    monkeypatch.setattr(ksampler, "sample", recording_sample)
    return calls


def write_input(settings, name, alpha=None, size=(70, 69)):
    """A 70 x 69 RGBA picture (LoadImage crops nothing; the nodes crop to 64 x 64 at (3, 2)); the mask LoadImage
    gives is 1 - alpha. Returns (rgb 0..1, mask) as the nodes see them."""
    h, w = size
    rgb = (np.arange(h * w * 3).reshape(h, w, 3) * 7 % 251).astype(np.uint8)
    if alpha is None:
        alpha = np.full((h, w), 255, np.uint8)
        alpha[20:50, 10:40] = 0  # repaint this
        alpha[52:60, 10:40] = 128  # mask 0.498: kept in the image, soft in the noise mask
    (settings.base_directory / "input").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.dstack([rgb, alpha])).save(settings.base_directory / "input" / name)
    return torch.from_numpy(rgb / 255.0).float()[None], 1.0 - torch.from_numpy(alpha / 255.0).float()[None]


def inpaint_workflow(ckpt, image, *, noise_mask=True, differential=False, prefix="inpaint"):
    prompt = default_workflow(ckpt, prefix=prefix)
    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    prompt["11"] = {"class_type": "InpaintModelConditioning", "inputs": {
        "positive": ["6", 0], "negative": ["7", 0], "vae": ["4", 2], "pixels": ["10", 0], "mask": ["10", 1],
        "noise_mask": noise_mask}}
    prompt["3"]["inputs"].update(positive=["11", 0], negative=["11", 1], latent_image=["11", 2])
    if differential:
        prompt["12"] = {"class_type": "DifferentialDiffusion", "inputs": {"model": ["4", 0], "strength": 1.0}}
        prompt["3"]["inputs"]["model"] = ["12", 0]
    return prompt


async def test_inpaint_model_conditioning_feeds_the_masked_image_and_mask(client, settings, recorded):
    ckpt = place(settings, "sd15-inpaint.safetensors", fx.write_sd15, inpaint=True)
    rgb, mask = write_input(settings, "hole.png")
    entry = await run_ok(client, inpaint_workflow(ckpt, "hole.png"))
    assert saved(settings, entry)[0].shape == (64, 64, 3)

    vae = CheckpointLoaderSimple().load_checkpoint(ckpt)[2]
    crop, crop_mask = rgb[:, 3:67, 2:66], mask[:, 3:67, 2:66]
    greyed = torch.where((crop_mask > 0.5).unsqueeze(-1), torch.full_like(crop, 0.5), crop)
    image = vae.encode(greyed) * SD1_SCALE  # the UNet sees it in model space
    latent_mask = torch.nn.functional.interpolate(crop_mask[None], size=(8, 8), mode="bilinear")
    assert {float(v) for v in latent_mask.round().unique()} == {0.0, 1.0}
    assert len(recorded["c_concat"]) == 3  # one batched cond + uncond call per step
    for c_concat in recorded["c_concat"]:
        assert c_concat.shape == (2, 5, 8, 8)
        for entry_concat in c_concat:
            assert torch.equal(entry_concat[:1], latent_mask[0].round())
            assert torch.allclose(entry_concat[1:], image[0], atol=1e-4)
    # noise_mask: the sampler limits generation to the (soft, latent-sized) mask
    [denoise_mask] = recorded["denoise_mask"]
    assert torch.allclose(denoise_mask, ksampler.reshape_mask(crop_mask[:, None], torch.Size((1, 4, 8, 8))))
    assert ((denoise_mask > 0) & (denoise_mask < 1)).any()


async def test_inpaint_model_conditioning_without_noise_mask(client, settings, recorded):
    ckpt = place(settings, "sd15-inpaint.safetensors", fx.write_sd15, inpaint=True)
    write_input(settings, "hole.png")
    with_mask = await run_ok(client, inpaint_workflow(ckpt, "hole.png", prefix="masked"))
    without = await run_ok(client, inpaint_workflow(ckpt, "hole.png", noise_mask=False, prefix="free"))
    assert recorded["denoise_mask"][0] is not None and recorded["denoise_mask"][1] is None
    # the UNet's mask channels come from the conditioning either way
    assert torch.equal(recorded["c_concat"][0], recorded["c_concat"][3])
    assert not np.array_equal(saved(settings, with_mask)[0], saved(settings, without)[0])


async def test_differential_diffusion_changes_the_run(client, settings):
    ckpt = place(settings, "sd15-inpaint.safetensors", fx.write_sd15, inpaint=True)
    alpha = np.tile(np.linspace(255, 0, 69).astype(np.uint8), (70, 1))  # a left-to-right gradient mask
    write_input(settings, "gradient.png", alpha=alpha)
    plain = await run_ok(client, inpaint_workflow(ckpt, "gradient.png", prefix="plain"))
    differential = await run_ok(client, inpaint_workflow(ckpt, "gradient.png", differential=True, prefix="dd"))
    assert not np.array_equal(saved(settings, plain)[0], saved(settings, differential)[0])


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "ddim"])
def test_differential_diffusion_changes_the_gradient_area_only(tmp_path, sampler):
    """Latent space (a random VAE mixes pixels globally): the kept region stays the source latent with and
    without the patch; the gradient region is sampled differently. The "simple" schedule stops above the model's
    smallest sigma; one that reaches it ("normal", "karras") thresholds at 0 on its last step, so there, as
    upstream, the patched mask opens everywhere for that step."""
    fx.write_sd15(tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors", "cpu", torch.float32)
    model = DiffusionModel(loaded.unet, "sd1", "eps", SD1_SCALE, manager=ModelManager(torch.device("cpu")))
    (patched,) = DifferentialDiffusion().apply(model)
    cond = [[torch.randn(1, 77, loaded.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(0)),
             {}]]
    source = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 8, 8)
    mask[..., 3:7] = torch.tensor([0.2, 0.4, 0.6, 0.8])  # columns 0-2 kept, 3-6 a gradient, 7 repainted

    def run(m):
        return ksample(m, {"samples": source, "noise_mask": mask}, seed=3, steps=6, cfg=5.0, sampler_name=sampler,
                       scheduler="simple", positive=cond, negative=cond)["samples"]

    plain, differential = run(model), run(patched)
    assert torch.allclose(plain[..., :3], source[..., :3], atol=1e-5)
    assert torch.allclose(differential[..., :3], source[..., :3], atol=1e-5)
    assert (differential[..., 3:7] - plain[..., 3:7]).abs().amax() > 0.05
    assert "denoise_mask_function" not in model.model_options


async def test_instruct_pix2pix_conditioning_on_an_eight_channel_unet(client, settings, recorded):
    def write_ip2p(path):
        sd = fx.sd15_state_dict(0, inpaint=True)
        key = fx.UNET + "input_blocks.0.0.weight"
        sd[key] = sd[key][:, :8].contiguous()  # latent + image: instruct-pix2pix's 8 input channels
        return fx.save(path, sd)

    ckpt = place(settings, "ip2p.safetensors", write_ip2p)
    rgb, _ = write_input(settings, "edit.png")
    prompt = default_workflow(ckpt, prefix="ip2p")
    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": "edit.png"}}
    prompt["11"] = {"class_type": "InstructPixToPixConditioning", "inputs": {
        "positive": ["6", 0], "negative": ["7", 0], "vae": ["4", 2], "pixels": ["10", 0]}}
    prompt["3"]["inputs"].update(positive=["11", 0], negative=["11", 1], latent_image=["11", 2])
    entry = await run_ok(client, prompt)
    assert saved(settings, entry)[0].shape == (64, 64, 3)
    vae = CheckpointLoaderSimple().load_checkpoint(ckpt)[2]
    image = vae.encode(rgb[:, 3:67, 2:66])  # as encoded: ComfyUI does not scale it into model space
    assert len(recorded["c_concat"]) == 3 and recorded["denoise_mask"] == [None]
    for c_concat in recorded["c_concat"]:
        assert c_concat.shape == (2, 4, 8, 8)
        assert torch.allclose(c_concat, image.expand(2, -1, -1, -1), atol=1e-4)
