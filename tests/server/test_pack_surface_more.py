"""A pack importing at module level what KJNodes-style packs do (`comfy.ops`, `comfy.patcher_extension`,
`comfy.sampler_helpers`, `comfy.latent_formats`, `comfy.taesd.taesd`, `comfy.ldm.*` helpers, `comfy.k_diffusion`,
more `comfy.utils` / `comfy.samplers` names, comfy_extras modules such as nodes_gits, `PromptServer.instance.app`):
it must load, declare its nodes, serve its static folder and compute with what it imported."""
from __future__ import annotations

import torch

from engine import Settings
from nodes.compat import install
from server.app import create_app

PACK = '''
import os

import torch
from aiohttp import web

import comfy.latent_formats
import comfy.ops
from comfy.k_diffusion.sampling import to_d
from comfy.ldm.flux.math import apply_rope
from comfy.ldm.lumina.model import FeedForward
from comfy.ldm.modules.attention import attention_pytorch, optimized_attention_masked, wrap_attn
from comfy.patcher_extension import CallbacksMP, WrappersMP, add_wrapper_with_key, get_wrappers_with_key
from comfy.sampler_helpers import prepare_mask
from comfy.samplers import KSAMPLER, CFGGuider, sampling_function
from comfy.taesd.taesd import Block, Clamp, conv
from comfy.utils import save_torch_file, state_dict_prefix_replace, tiled_scale_multidim, load_torch_file
from comfy_extras.nodes_gits import GITSScheduler
from comfy_extras.nodes_mask import composite
from server import PromptServer

if not PromptServer.instance.app.router.frozen:
    PromptServer.instance.app.add_routes([web.static("/surface_pack_web", os.path.dirname(__file__))])


class ScheduledGuider(CFGGuider):
    def set_cfg(self, cfg):
        self.cfg = cfg * 2


class Surface:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "surface"

    def run(self, image):
        return (image,)


NODE_CLASS_MAPPINGS = {"Surface": Surface, "PackGITS": GITSScheduler}
'''


def _load(tmp_path):
    pack = tmp_path / "custom_nodes" / "surface_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)
    return create_app(Settings(base_directory=tmp_path, cpu=True))


async def test_the_pack_loads_and_serves_its_static_folder(aiohttp_client, tmp_path):
    client = await aiohttp_client(_load(tmp_path))
    info = await (await client.get("/object_info")).json()
    assert info["Surface"]["python_module"] == "custom_nodes.surface_pack"
    assert info["PackGITS"]["input"] == info["GITSScheduler"]["input"]
    assert (await client.get("/surface_pack_web/__init__.py")).status == 200


def test_the_imported_helpers_compute(tmp_path):
    install()
    import comfy.latent_formats
    import comfy.ops
    import comfy.utils
    from comfy.ldm.flux.math import apply_rope
    from comfy.ldm.modules.attention import optimized_attention, wrap_attn
    from comfy.patcher_extension import WrappersMP, add_wrapper_with_key, get_wrappers_with_key
    from comfy.samplers import CFGGuider
    from comfy.taesd.taesd import Block

    sd = {"model.diffusion_model.a": torch.ones(2), "other": torch.zeros(1)}
    comfy.utils.save_torch_file(sd, tmp_path / "x.safetensors")
    loaded = comfy.utils.state_dict_prefix_replace(comfy.utils.load_torch_file(tmp_path / "x.safetensors"),
                                                   {"model.diffusion_model.": ""})
    assert sorted(loaded) == ["a", "other"]
    upscaled = comfy.utils.tiled_scale_multidim(torch.rand(1, 3, 16, 16), lambda t: t.repeat_interleave(2, -1)
                                                .repeat_interleave(2, -2), tile=(8, 8), overlap=2, upscale_amount=2)
    assert upscaled.shape == (1, 3, 32, 32)
    fmt = comfy.latent_formats.SD3()
    latent = torch.randn(1, 16, 4, 4)
    assert torch.allclose(fmt.process_out(fmt.process_in(latent)), latent, atol=1e-6)
    assert comfy.ops.disable_weight_init.Linear(4, 2).weight.shape == (2, 4)
    assert Block(4, 8)(torch.rand(1, 4, 8, 8)).shape == (1, 8, 8, 8)
    # a rotation by identity matrices leaves q and k unchanged
    q = torch.randn(1, 2, 3, 4)
    eye = torch.eye(2).expand(1, 1, 3, 2, 2, 2)
    assert torch.allclose(apply_rope(q, q, eye)[0], q)
    options = {}
    add_wrapper_with_key(WrappersMP.APPLY_MODEL, "k", print, options, is_model_options=True)
    assert get_wrappers_with_key(WrappersMP.APPLY_MODEL, "k", options, is_model_options=True) == [print]

    @wrap_attn
    def attend(q, k, v, heads, **kwargs):
        return optimized_attention(q, k, v, heads)
    seen = []
    x = torch.randn(1, 3, 8)
    attend(x, x, x, 2, transformer_options={"optimized_attention_override": lambda f, *a, **kw: seen.append(1)})
    assert seen == [1] and attend(x, x, x, 2).shape == x.shape
    guider = CFGGuider("model")
    guider.set_conds([1], [2])
    guider.set_cfg(3.0)
    assert (guider.model, guider.positive, guider.negative, guider.cfg) == ("model", [1], [2], 3.0)
