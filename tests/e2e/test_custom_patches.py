"""A custom node pack that patches the model the way ComfyUI packs do (comfy.model_patcher, comfy.samplers,
comfy.ldm.modules.attention, the MODEL's set_model_* methods), loaded from custom_nodes/ and run over HTTP."""
from __future__ import annotations

import numpy as np

from engine import Settings
from server.app import create_app
from tests.e2e.test_families import run_ok
from tests.e2e.test_txt2img import default_workflow, saved
from tests.fixtures.checkpoints import write_sd15

PACK = '''
import comfy.model_patcher
import comfy.samplers
from comfy.ldm.modules.attention import optimized_attention


class PackPerturbedAttention:
    """Perturbed-attention guidance, written as packs write it."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "scale": ("FLOAT", {"default": 3.0})}}
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "pack"

    def patch(self, model, scale):
        def post_cfg(args):
            options = comfy.model_patcher.set_model_options_patch_replace(
                args["model_options"].copy(), lambda q, k, v, extra, mask=None: v, "attn1", "middle", 0)
            (perturbed,) = comfy.samplers.calc_cond_batch(args["model"], [args["cond"]], args["input"],
                                                          args["sigma"], options)
            return args["denoised"] + (args["cond_denoised"] - perturbed) * scale
        m = model.clone()
        m.set_model_sampler_post_cfg_function(post_cfg)
        return (m,)


class PackSharperAttention:
    """Self-attention recomputed with a sharper softmax on every block: heads split by hand."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "sharpness": ("FLOAT", {"default": 1.0})}}
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "pack"

    def patch(self, model, sharpness):
        def sharper(q, k, v, extra):
            heads = extra["n_heads"]
            split = [t.view(t.shape[0], -1, heads, extra["dim_head"]).transpose(1, 2) for t in (q, k, v)]
            out = optimized_attention(split[0] * sharpness, split[1], split[2], heads, skip_reshape=True)
            return out
        m = model.clone()
        for block in (("input", 1), ("middle", 0), ("output", 2), ("output", 3)):
            m.set_model_attn1_replace(sharper, *block)
        return (m,)


class PackSkipDamping:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "pack"

    def patch(self, model):
        m = model.clone()
        m.set_model_output_block_patch(lambda h, hsp, transformer_options: (h, hsp * 0.5))
        return (m,)


NODE_CLASS_MAPPINGS = {"PackPerturbedAttention": PackPerturbedAttention,
                       "PackSharperAttention": PackSharperAttention, "PackSkipDamping": PackSkipDamping}
'''


async def test_a_packs_model_patches_steer_the_sampler(aiohttp_client, tmp_path):
    (tmp_path / "custom_nodes" / "patch_pack").mkdir(parents=True)
    (tmp_path / "custom_nodes" / "patch_pack" / "__init__.py").write_text(PACK)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    write_sd15(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    settings = Settings(base_directory=tmp_path, cpu=True)
    client = await aiohttp_client(create_app(settings))

    async def image(patch: str | None = None, **inputs) -> np.ndarray:
        prompt = default_workflow("tiny.safetensors", prefix=patch or "plain")
        if patch is not None:
            prompt["20"] = {"class_type": patch, "inputs": {"model": ["4", 0], **inputs}}
            prompt["3"]["inputs"]["model"] = ["20", 0]
        return saved(settings, await run_ok(client, prompt))[0].astype(int)

    plain = await image()
    # the pack's guidance is the built-in node's algorithm: the same image
    assert np.array_equal(await image("PackPerturbedAttention", scale=2.0),
                          await image("PerturbedAttentionGuidance", scale=2.0))
    assert np.abs(await image("PackPerturbedAttention", scale=2.0) - plain).mean() > 1
    # replacing self-attention by the same attention computed by the pack leaves the image (within rounding)
    assert np.abs(await image("PackSharperAttention", sharpness=1.0) - plain).max() <= 2
    assert np.abs(await image("PackSharperAttention", sharpness=4.0) - plain).mean() > 1
    assert np.abs(await image("PackSkipDamping") - plain).mean() > 1
