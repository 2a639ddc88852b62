"""The custom-sampling nodes give exactly what KSampler gives for the same settings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import of_type, run_prompt, wait_history
from tests.e2e.test_txt2img import checkpoint, default_workflow, saved  # noqa: F401 (fixture)
from tests.upstream import declaration



def custom_workflow(ckpt: str, *, seed=1234, steps=3, sampler="euler", scheduler="normal"):
    prompt = default_workflow(ckpt, seed=seed, steps=steps, sampler=sampler, scheduler=scheduler, prefix="custom")
    del prompt["3"]
    prompt.update({
        "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "11": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                     "cfg": 7.0}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "13": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": scheduler, "steps": steps,
                                                          "denoise": 1.0}},
        "3": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["10", 0], "guider": ["11", 0],
                                                                "sampler": ["12", 0], "sigmas": ["13", 0],
                                                                "latent_image": ["5", 0]}},
    })
    return prompt


@pytest.mark.parametrize("sampler, scheduler", [("euler", "normal"), ("dpmpp_2m_sde", "karras")])
async def test_sampler_custom_advanced_matches_ksampler(client, settings, checkpoint, sampler, scheduler):
    reference = saved(settings, await wait_history(client, (await run_prompt(
        client, default_workflow(checkpoint, sampler=sampler, scheduler=scheduler)))[0]))
    prompt_id, messages = await run_prompt(client, custom_workflow(checkpoint, sampler=sampler, scheduler=scheduler))
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    custom = saved(settings, await wait_history(client, prompt_id))
    assert np.array_equal(reference[0], custom[0])


async def test_sampler_custom_with_disabled_noise_and_denoised_output(client, settings, checkpoint):
    prompt = custom_workflow(checkpoint)
    prompt["3"] = {"class_type": "SamplerCustom", "inputs": {
        "model": ["4", 0], "add_noise": True, "noise_seed": 1234, "cfg": 7.0, "positive": ["6", 0],
        "negative": ["7", 0], "sampler": ["12", 0], "sigmas": ["13", 0], "latent_image": ["5", 0]}}
    prompt["8"]["inputs"]["samples"] = ["3", 1]  # the denoised output
    prompt_id, messages = await run_prompt(client, prompt)
    assert not of_type(messages, "execution_error"), of_type(messages, "execution_error")
    assert saved(settings, await wait_history(client, prompt_id))[0].shape == (64, 64, 3)


async def test_declarations_match_upstream(client):
    ours = await (await client.get("/object_info")).json()
    names = ["KSampler", "KSamplerAdvanced", "CheckpointLoaderSimple", "CLIPTextEncode", "CLIPSetLastLayer",
             "CLIPTextEncodeSDXL", "CLIPTextEncodeSDXLRefiner", "VAEDecode", "VAEEncode", "VAEDecodeTiled",
             "VAEEncodeTiled", "VAEEncodeForInpaint", "KSamplerSelect", "BasicScheduler", "KarrasScheduler",
             "ExponentialScheduler", "SDTurboScheduler", "SplitSigmas", "FlipSigmas", "RandomNoise", "DisableNoise",
             "BasicGuider", "CFGGuider", "SamplerCustom", "SamplerCustomAdvanced", "SamplerEulerAncestral",
             "LoadImage", "SaveImage", "PreviewImage", "ImageScale", "ImageScaleBy", "EmptyImage",
             "ImagePadForOutpaint", "UNETLoader", "VAELoader"]
    for name in names:
        for key in ("input", "input_order", "output", "output_is_list", "output_name", "category", "output_node"):
            theirs = declaration(name)[key]
            if key == "input":  # file lists depend on each server's folders; this app's are empty
                theirs = json.loads(json.dumps(theirs).replace('["tiny-sd15.safetensors"]', "[]"))
            assert ours[name][key] == theirs, (name, key)
