"""A pack importing at module level what KJNodes-style packs do (`comfy.ops`, `comfy.patcher_extension`,
`comfy.sampler_helpers`, `comfy.latent_formats`, `comfy.taesd.taesd`, `comfy.ldm.*` helpers, `comfy.k_diffusion`,
more `comfy.utils` / `comfy.samplers` names, comfy_extras modules such as nodes_gits, `PromptServer.instance.app`):
it must load, declare its nodes, serve its static folder and compute with what it imported. A second pack uses
what Impact Pack, VideoHelperSuite, efficiency-nodes, IPAdapter_plus and GGUF take at import: their own previewers
(`latent_preview.TAESD` ...), the prompt queue (`PromptServer.instance.prompt_queue`), on-prompt handlers,
`nodes.EXTENSION_WEB_DIRS`, and names that only need to exist until used."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

import nodes
from engine import Settings
from nodes.compat import install
from server.app import create_app
from tests.conftest import of_type, run_prompt, wait_history

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


QUEUE_PACK = '''
import os

import comfy.float
import comfy.lora
import comfy.samplers
import nodes
import server
from comfy.clip_vision import Output, clip_preprocess
from comfy.k_diffusion.utils import FolderOfImages
from comfy.ldm.modules.distributions.distributions import DiagonalGaussianDistribution
from comfy.sample import np
from comfy.samplers import KSamplerX0Inpaint
from comfy.sdxl_clip import SDXLClipG, SDXLClipModel, SDXLRefinerClipModel
from execution import PromptExecutor
from latent_preview import TAESD, Latent2RGBPreviewer, TAESDPreviewerImpl
from server import BinaryEventTypes, PromptServer

ModelPatcher = comfy.model_patcher.ModelPatcher  # reached through comfy.samplers, without importing it
original_handle_execution_error = PromptExecutor.handle_execution_error
route = server.web.Response
prompt_queue = PromptServer.instance.prompt_queue
RUNNING_AT_IMPORT = dict(prompt_queue.currently_running)
nodes.EXTENSION_WEB_DIRS["queue-pack-web"] = os.path.join(os.path.dirname(__file__), "js")


def rewrite(body):
    for node in body["prompt"].values():
        if node["inputs"].get("text") == "rewrite me":
            node["inputs"]["text"] = "rewritten"
    return body


PromptServer.instance.add_on_prompt_handler(lambda body: 1 / 0)
PromptServer.instance.add_on_prompt_handler(rewrite)


class QueueProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": ""}), "requeue": ("INT", {"default": 0})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "queue pack"

    def run(self, text, requeue):
        (number, prompt_id, prompt, extra_data, outputs), = prompt_queue.currently_running.values()
        requeued = None
        if requeue:
            prompt = {key: {**node, "inputs": {**node["inputs"], "requeue": requeue - 1}}
                      for key, node in prompt.items()}
            requeued = str(server.uuid.uuid4())
            prompt_queue.put((-1, requeued, prompt, extra_data, outputs))
        return {"ui": {"text": [text], "running": [prompt_id], "node": [PromptServer.instance.last_node_id],
                       "requeued": [requeued], "remaining": [prompt_queue.get_tasks_remaining()],
                       "at_import": [RUNNING_AT_IMPORT]}}


NODE_CLASS_MAPPINGS = {"QueueProbe": QueueProbe}
'''


@pytest.fixture
async def queue_client(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setattr(nodes, "EXTENSION_WEB_DIRS", {})  # the pack adds to it: keep that out of other tests
    pack = tmp_path / "custom_nodes" / "queue_pack"
    (pack / "js").mkdir(parents=True)
    (pack / "__init__.py").write_text(QUEUE_PACK)
    (pack / "js" / "probe.js").write_text("// probe")
    return await aiohttp_client(create_app(Settings(base_directory=tmp_path, cpu=True)))


async def test_the_prompt_queue_on_prompt_handlers_and_a_requeue(queue_client):
    prompt = {"1": {"class_type": "QueueProbe", "inputs": {"text": "rewrite me", "requeue": 1}}}
    prompt_id, messages = await run_prompt(queue_client, prompt)
    ui = {d["node"]: d["output"] for d in of_type(messages, "executed")}["1"]
    # the failing handler is skipped; the running entry is this prompt; the requeued copy counts as remaining
    assert ui["text"] == ["rewritten"] and ui["running"] == [prompt_id] and ui["node"] == ["1"]
    assert ui["remaining"] == [2] and ui["at_import"] == [{}]
    requeued = await wait_history(queue_client, ui["requeued"][0])
    assert requeued["status"]["status_str"] == "success"
    assert requeued["outputs"]["1"]["text"] == ["rewritten"] and requeued["outputs"]["1"]["requeued"] == [None]


async def test_a_web_folder_put_in_extension_web_dirs_is_served(queue_client):
    assert "/extensions/queue-pack-web/probe.js" in await (await queue_client.get("/extensions")).json()
    assert await (await queue_client.get("/extensions/queue-pack-web/probe.js")).text() == "// probe"


def _taesd_decoder_file(path):
    """A random TAESD decoder saved in diffusers' layout, and the module itself."""
    from diffusers.models.autoencoders.vae import DecoderTiny

    import comfy.utils

    decoder = DecoderTiny(in_channels=4, out_channels=3, num_blocks=(3, 3, 3, 1), block_out_channels=(64,) * 4,
                          upsampling_scaling_factor=2, act_fn="relu", upsample_fn="nearest").eval()
    comfy.utils.save_torch_file({f"decoder.{k}": v for k, v in decoder.state_dict().items()}, path)
    return decoder


@torch.no_grad()
def test_the_previewers_packs_build_themselves(tmp_path):
    install()
    import comfy.latent_formats
    from latent_preview import TAESD, Latent2RGBPreviewer, TAESDPreviewerImpl

    from engine.sampling.preview import latent_to_image

    decoder = _taesd_decoder_file(tmp_path / "taesd_decoder.safetensors")
    fmt = comfy.latent_formats.SD15()
    taesd = TAESD(None, str(tmp_path / "taesd_decoder.safetensors"), latent_channels=fmt.latent_channels)
    x0 = torch.randn(2, 4, 8, 8)
    assert torch.allclose(taesd.decode(x0), decoder(x0), atol=1e-5)
    assert TAESDPreviewerImpl(taesd).decode_latent_to_preview(x0).size == (64, 64)
    with pytest.raises(NotImplementedError):
        taesd.encode(torch.rand(1, 3, 64, 64))
    assert fmt.taesd_decoder_name == "taesd_decoder"
    # a pack's latent2rgb preview from the format's factors is comfyd's own preview
    preview = Latent2RGBPreviewer(fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias).decode_latent_to_preview(x0)
    assert preview.tobytes() == latent_to_image(x0, "sd").tobytes()


def test_the_helpers_of_the_second_pack(tmp_path):
    install()
    import comfy.float
    import comfy.lora
    from comfy.clip_vision import Output, clip_preprocess
    from comfy.k_diffusion.utils import FolderOfImages
    from comfy.ldm.modules.distributions.distributions import DiagonalGaussianDistribution
    from comfy.samplers import KSamplerX0Inpaint
    from comfy.sdxl_clip import SDXLClipModel

    assert clip_preprocess(torch.rand(2, 32, 48, 4), size=16).shape == (2, 3, 16, 16)
    out = Output()
    out["image_embeds"] = torch.ones(1)
    assert out.image_embeds is out["image_embeds"]
    Image.new("RGB", (4, 2)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("")
    images = FolderOfImages(tmp_path, transform=lambda image: image.size)
    assert len(images) == 1 and images[0] == ((4, 2),)
    mean = torch.randn(1, 4, 2, 2)
    standard = DiagonalGaussianDistribution(torch.cat([torch.zeros_like(mean), torch.zeros_like(mean)], dim=1))
    assert torch.equal(standard.kl(), torch.zeros(1))
    assert torch.equal(DiagonalGaussianDistribution(torch.cat([mean, mean], dim=1)).mode(), mean)
    assert comfy.float.stochastic_rounding(mean, torch.bfloat16).dtype == torch.bfloat16
    for unavailable in (lambda: comfy.float.stochastic_rounding(mean, torch.float8_e4m3fn),
                        lambda: comfy.lora.calculate_weight([], mean, "key"),
                        lambda: KSamplerX0Inpaint(None, None), SDXLClipModel):
        with pytest.raises(NotImplementedError):
            unavailable()
