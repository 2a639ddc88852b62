"""ComfyUI's model_options patch functions, as the sampler calls them, and the MODEL methods that set them."""
from __future__ import annotations

import pytest
import torch

from engine.models.diffusion import DiffusionModel
from engine.sampling.guidance import CFGDenoiser, prepare
from nodes import model_sampling
from tests.engine.test_guidance import ConstantModel, cond

X = torch.zeros(1, 4, 8, 8)
SIGMA = torch.tensor([5.0])


def run(options: dict, cfg: float = 7.5, x=X):
    model = ConstantModel()
    model.model_options = options
    denoiser = CFGDenoiser(model, prepare([cond(3.0)], model, x), prepare([cond(1.0)], model, x), cfg)
    return denoiser(x, SIGMA), model


def test_the_model_function_wrapper_runs_each_model_call_with_upstreams_arguments():
    seen = []

    def wrapper(apply_model, args):
        seen.append(args)
        return apply_model(args["input"], args["timestep"], **args["c"]) * 2

    out, model = run({"model_function_wrapper": wrapper, "transformer_options": {"mine": 1}})
    assert torch.allclose(out, torch.full_like(out, 2 * (1.0 + (3.0 - 1.0) * 7.5)))
    [args] = seen
    assert sorted(args) == ["c", "cond_or_uncond", "input", "timestep"] and model.calls == [2]
    assert sorted(args["cond_or_uncond"]) == [0, 1] and args["input"].shape[0] == 2
    transformer_options = args["c"]["transformer_options"]
    assert transformer_options["mine"] == 1 and transformer_options["cond_or_uncond"] == args["cond_or_uncond"]
    assert torch.equal(transformer_options["sigmas"], args["timestep"])


def test_pre_cfg_then_cfg_then_post_cfg_functions_in_order():
    calls = []

    def pre(args):
        calls.append("pre")
        cond_pred, uncond_pred = args["conds_out"]
        assert args["conds"][1] is not None and args["cond_scale"] == 2.0 and torch.equal(args["sigma"], SIGMA)
        return [cond_pred + 1, uncond_pred]  # positive 3 -> 4

    def cfg(args):
        calls.append("cfg")
        assert torch.equal(args["cond"], args["input"] - args["cond_denoised"])
        assert torch.equal(args["uncond"], args["input"] - args["uncond_denoised"])
        return args["uncond"]  # "guided" = the negative prediction

    def post(tag, shift):
        def function(args):
            calls.append(tag)
            assert torch.all(args["cond_denoised"] == 4.0) and torch.all(args["uncond_denoised"] == 1.0)
            return args["denoised"] + shift
        return function

    out, _ = run({"sampler_pre_cfg_function": [pre], "sampler_cfg_function": cfg,
                  "sampler_post_cfg_function": [post("post1", 10.0), post("post2", 100.0)]}, cfg=2.0)
    assert calls == ["pre", "cfg", "post1", "post2"]
    assert torch.all(out == 1.0 + 10.0 + 100.0)


def test_cfg_one_skips_the_negative_unless_a_patch_disables_that():
    _, model = run({}, cfg=1.0)
    assert model.calls == [1]
    _, model = run({"disable_cfg1_optimization": True}, cfg=1.0)
    assert model.calls == [2]


def model() -> DiffusionModel:
    return DiffusionModel(torch.nn.Identity(), "sd1", "eps", 0.18215)


def test_setters_put_functions_on_the_clone_only():
    base = model()
    clone = base.clone()
    clone.set_model_sampler_post_cfg_function(lambda args: args["denoised"], disable_cfg1_optimization=True)
    clone.set_model_sampler_pre_cfg_function(lambda args: args["conds_out"])
    clone.set_model_unet_function_wrapper(lambda apply_model, args: apply_model(args["input"], args["timestep"]))
    again = clone.clone()
    again.set_model_sampler_post_cfg_function(lambda args: args["denoised"])
    assert base.model_options == {"transformer_options": {}}
    assert len(clone.model_options["sampler_post_cfg_function"]) == 1
    assert len(again.model_options["sampler_post_cfg_function"]) == 2
    assert clone.model_options["disable_cfg1_optimization"] is True
    assert set(clone.model_options) >= {"sampler_pre_cfg_function", "model_function_wrapper"}


def test_the_older_three_argument_cfg_function_is_adapted():
    patched = model()
    patched.set_model_sampler_cfg_function(lambda cond, uncond, scale: uncond + (cond - uncond) * scale * 0)
    out, _ = run(patched.model_options)
    assert torch.all(out == 1.0)  # guided = x - (x - negative prediction)


def test_object_patches_replace_what_the_model_has():
    patched = model()
    (discrete,) = model_sampling.ModelSamplingDiscrete().patch(patched, "v_prediction", True)
    assert discrete.get_model_object("model_sampling").prediction == "v_prediction"
    assert patched.model_sampling.prediction == "eps"
    with pytest.raises(AttributeError, match="no object 'latent_format'"):
        patched.add_object_patch("latent_format", object())


def test_continuous_edm_refuses_the_samplings_it_cannot_run_yet():
    with pytest.raises(ValueError, match="cosmos_rflow"):
        model_sampling.ModelSamplingContinuousEDM().patch(model(), "cosmos_rflow", 80.0, 0.002)
