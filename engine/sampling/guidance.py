"""Classifier-free guidance over ComfyUI CONDITIONING lists: the denoiser the samplers call.

CONDITIONING is a list of `[tensor, options]` pairs (ComfyUI's representation). Each pair becomes a `Cond`
with its area, mask, strength and active sigma range resolved once before sampling; at every step the conds
that apply are run through the model (batched where their shapes allow) and blended by their weights, then
`uncond + (cond - uncond) * cfg` as ComfyUI computes it.

The model is anything with `model_sampling`, `apply_model(x, sigma, **model_conds) -> denoised` and
`extra_conds(cond, options, noise, width, height, latent_image, denoise_mask, seed) -> dict`
(engine.models.diffusion), and optionally ComfyUI's `model_options`: the patch functions that patch nodes (built-in
and custom) set on a MODEL clone are called here with the arguments ComfyUI gives them:
  model_function_wrapper(apply_model, {"input", "timestep", "c", "cond_or_uncond"}) instead of each model call;
  sampler_pre_cfg_function: [f({"conds", "conds_out", "cond_scale", "timestep", "input", "sigma", "model",
      "model_options"}) -> conds_out], after the model calls;
  sampler_cfg_function(f{"cond", "uncond", ...}) -> x - guided, in place of the CFG formula ("cond" / "uncond" are
      x minus the predictions, "cond_denoised" / "uncond_denoised" the predictions);
  sampler_post_cfg_function: [f({"denoised", "cond_denoised", "uncond_denoised", ...}) -> denoised], in turn;
  disable_cfg1_optimization: run the unconditional pass even at cfg 1.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ..resize import common_upscale


@dataclasses.dataclass
class Cond:
    model_conds: dict[str, torch.Tensor]
    area: tuple[int, int, int, int] | None = None  # (height, width, y, x) in latent units
    strength: float = 1.0
    mask: torch.Tensor | None = None  # [B, H, W] at latent resolution
    mask_strength: float = 1.0
    sigma_start: float | None = None  # inactive above this sigma (start_percent)
    sigma_end: float | None = None  # inactive below this sigma (end_percent)
    options: dict = dataclasses.field(default_factory=dict)
    control: object = None  # options["control"]: a ControlNet / T2I-Adapter chain (engine.models.controlnet)
    gligen: tuple | None = None  # options["gligen"]: ("position", Gligen, boxes) (engine.models.gligen)


def _resolve_area(options: dict, dims: tuple[int, int]):
    area = options.get("area")
    if area is None:
        return None
    if area[0] == "percentage":
        h, w, y, x = area[1:5]
        return (max(1, round(h * dims[0])), max(1, round(w * dims[1])), round(y * dims[0]), round(x * dims[1]))
    return tuple(int(v) for v in area[:4])


def _mask_bounds(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(h, w, y, x) of the non-zero region of a [B, H, W] mask, at least 8x8; (8, 8, 0, 0) when empty."""
    bounds = mask.abs().amax(dim=0)
    ys, xs = torch.where(bounds != 0)
    if ys.numel() == 0:
        return 8, 8, 0, 0
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    return max(8, y1 - y0 + 1), max(8, x1 - x0 + 1), y0, x0


def prepare(conditioning: list, model, noise: torch.Tensor, *, latent_image=None, denoise_mask=None,
            prompt_type: str = "positive", seed: int = 0) -> list[Cond]:
    """Resolve a CONDITIONING list for one sampling run on latents shaped like `noise`."""
    dims = tuple(noise.shape[2:])
    ms = model.model_sampling
    conds = []
    for tensor, options in conditioning:
        area = _resolve_area(options, dims)
        mask = options.get("mask")
        if mask is not None:
            mask = mask.to(noise.device)
            if mask.ndim == len(dims):
                mask = mask.unsqueeze(0)
            if tuple(mask.shape[1:]) != dims:
                mask = common_upscale(mask.unsqueeze(1), dims[1], dims[0], "bilinear").squeeze(1)
            if options.get("set_area_to_bounds", False):
                area = _mask_bounds(mask)
        start, end = options.get("start_percent"), options.get("end_percent")
        model_conds = model.extra_conds(
            tensor, options, noise, width=options.get("width", dims[1] * 8), height=options.get("height", dims[0] * 8),
            prompt_type=prompt_type, latent_image=latent_image, denoise_mask=denoise_mask, seed=seed)
        conds.append(Cond(
            model_conds=model_conds, area=area, strength=options.get("strength", 1.0), mask=mask,
            mask_strength=options.get("mask_strength", 1.0),
            sigma_start=None if start is None else float(ms.percent_to_sigma(start)),
            sigma_end=None if end is None else float(ms.percent_to_sigma(end)),
            options=options, control=options.get("control"), gligen=options.get("gligen")))
    return conds


def _inside(inner, outer) -> bool:
    return inner[2] >= outer[2] and inner[3] >= outer[3] \
        and inner[0] + inner[2] <= outer[0] + outer[2] and inner[1] + inner[3] <= outer[1] + outer[3]


def add_opposite_areas(conds: list[Cond], others: list[Cond]) -> None:
    """Give `others` a cond with each area of `conds` (from its smallest enclosing cond), as ComfyUI does, so an
    area prompt has a matching negative and guidance stays balanced inside the area."""
    for c in conds:
        if c.area is None:
            continue
        smallest = None
        for o in others:
            if o.area is None:
                smallest = smallest or o
            elif _inside(c.area, o.area) and (smallest is None or smallest.area is None
                                              or math.prod(smallest.area[:2]) > math.prod(o.area[:2])):
                smallest = o
        if smallest is None or smallest.area == c.area:
            continue
        others.append(dataclasses.replace(c, model_conds=dict(smallest.model_conds)))


def _whole(c: Cond) -> bool:
    return "area" not in c.options


def _share_with_uncond(values: list, negative: list[Cond], field: str) -> None:
    """Unless a whole-image negative already has a `field`, the whole-image negatives take `values` in turn."""
    free = [i for i, c in enumerate(negative) if _whole(c)]
    if not values or not free or any(getattr(negative[i], field) is not None for i in free):
        return
    originals = {i: negative[i] for i in free}
    for n, value in enumerate(values):
        index = free[n % len(free)]
        negative[index] = dataclasses.replace(originals[index], **{field: value})


def share_control_with_uncond(positive: list[Cond], negative: list[Cond]) -> None:
    """ControlNetApply (the old node) marks its conds "control_apply_to_uncond": the whole-image negatives take
    those positives' controls (see _share_with_uncond)."""
    _share_with_uncond([c.control for c in positive if _whole(c) and c.control is not None
                        and c.options.get("control_apply_to_uncond", False)], negative, "control")


def share_gligen_with_uncond(positive: list[Cond], negative: list[Cond]) -> None:
    """The whole-image negatives take the whole-image positives' GLIGEN boxes, as ComfyUI gives them: the
    unconditional prediction is grounded on the same boxes (see _share_with_uncond)."""
    _share_with_uncond([c.gligen for c in positive if _whole(c) and c.gligen is not None], negative, "gligen")


def _area_weights(cond: Cond, x: torch.Tensor):
    """(input crop, weight tensor) of a cond for latents x, or None when it is inactive at this sigma."""
    area = cond.area
    crop = x
    if area is not None:
        h = min(x.shape[2] - area[2], area[0])
        w = min(x.shape[3] - area[3], area[1])
        area = (h, w, area[2], area[3])
        crop = x[:, :, area[2]:area[2] + h, area[3]:area[3] + w]
    if cond.mask is not None:
        mask = cond.mask[: crop.shape[0]]
        if area is not None:
            mask = mask[:, area[2]:area[2] + area[0], area[3]:area[3] + area[1]]
        mask = (mask * cond.mask_strength).unsqueeze(1)
        weight = mask.repeat(crop.shape[0] // mask.shape[0], crop.shape[1], 1, 1) * cond.strength
    else:
        weight = torch.ones_like(crop) * cond.strength
    if cond.mask is None and area is not None:
        # Fade area edges that are inside the image over up to 8 latent pixels.
        for axis, (size, offset, full) in enumerate(((area[0], area[2], x.shape[2]), (area[1], area[3], x.shape[3]))):
            ramp = min(8, weight.shape[2 + axis] // 4)
            for t in range(ramp):
                factor = (t + 1) / ramp
                if offset != 0:
                    weight.narrow(2 + axis, t, 1).mul_(factor)
                if size + offset < full:
                    weight.narrow(2 + axis, size - 1 - t, 1).mul_(factor)
    return crop, weight, area


def _batch_size_to(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.shape[0] > batch:
        return tensor[:batch]
    if tensor.shape[0] < batch:
        return tensor.repeat((math.ceil(batch / tensor.shape[0]),) + (1,) * (tensor.ndim - 1))[:batch]
    return tensor


def _model_inputs(cond: Cond, crop: torch.Tensor, area) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in cond.model_conds.items():
        if key == "c_concat" and area is not None:  # spatial conditioning follows the area crop
            value = value[:, :, area[2]:area[2] + area[0], area[3]:area[3] + area[1]]
        out[key] = _batch_size_to(value, crop.shape[0])
    return out


@dataclasses.dataclass
class _Run:
    """One cond's share of a step: which output it adds to, its (cropped) input, weights and model inputs."""
    index: int
    x: torch.Tensor
    weight: torch.Tensor
    area: tuple | None
    inputs: dict[str, torch.Tensor]
    control: object
    gligen: object

    def batches_with(self, other: "_Run") -> bool:
        return self.x.shape == other.x.shape and self.control is other.control and self.gligen is other.gligen \
            and {k: v.shape for k, v in self.inputs.items()} == {k: v.shape for k, v in other.inputs.items()}


def model_options(model) -> dict:
    return getattr(model, "model_options", None) or {}


def with_sampler_function(options: dict, key: str, function, disable_cfg1_optimization: bool = False) -> dict:
    """A copy of `options` with `function` appended to the list `key` ("sampler_pre_cfg_function" /
    "sampler_post_cfg_function")."""
    out = {**options, key: [*options.get(key, []), function]}
    if disable_cfg1_optimization:
        out["disable_cfg1_optimization"] = True
    return out


def calc_cond_batch(model, cond_lists: list[list[Cond] | None], x: torch.Tensor, sigma: torch.Tensor,
                    options: dict | None = None) -> list[torch.Tensor]:
    """The weighted model prediction for each cond list (None lists give zeros), with the model's model_options or
    `options` in their place (a patch function may run the model with patches of its own)."""
    options = model_options(model) if options is None else options
    wrapper = options.get("model_function_wrapper")
    outputs = [torch.zeros_like(x) for _ in cond_lists]
    counts = [torch.full_like(x, 1e-37) for _ in cond_lists]
    runs = []
    current = float(sigma.max())
    for index, conds in enumerate(cond_lists):
        for cond in conds or ():
            if cond.sigma_start is not None and current > cond.sigma_start:
                continue
            if cond.sigma_end is not None and current < cond.sigma_end:
                continue
            crop, weight, area = _area_weights(cond, x)
            runs.append(_Run(index, crop, weight, area, _model_inputs(cond, crop, area), cond.control, cond.gligen))
    while runs:
        # One model call for every pending run that can share a batch with the first (typically cond + uncond).
        first = runs[0]
        group = [r for r in runs if r.batches_with(first)]
        runs = [r for r in runs if not any(r is g for g in group)]
        batch_x = torch.cat([r.x for r in group])
        batch_sigma = torch.cat([sigma] * len(group))
        batch_conds = {k: torch.cat([r.inputs[k] for r in group]) for k in first.inputs}
        if first.control is not None:
            batch_conds["control"] = first.control.residuals(model.model_sampling, batch_x, batch_sigma, batch_conds,
                                                             len(group))
        if first.gligen is not None:
            batch_conds["gligen"] = first.gligen
        cond_or_uncond = [r.index for r in group]  # 0: the positive list, 1: the negative one
        batch_conds["transformer_options"] = {**options.get("transformer_options", {}),
                                              "cond_or_uncond": cond_or_uncond, "sigmas": batch_sigma}
        if wrapper is not None:
            prediction = wrapper(model.apply_model, {"input": batch_x, "timestep": batch_sigma, "c": batch_conds,
                                                     "cond_or_uncond": cond_or_uncond})
        else:
            prediction = model.apply_model(batch_x, batch_sigma, **batch_conds)
        predictions = prediction.chunk(len(group))
        for run, prediction in zip(group, predictions):
            if run.area is None:
                outputs[run.index] += prediction * run.weight
                counts[run.index] += run.weight
            else:
                h, w, y, x0 = run.area
                region = (slice(None), slice(None), slice(y, y + h), slice(x0, x0 + w))
                outputs[run.index][region] += prediction * run.weight
                counts[run.index][region] += run.weight
    return [out / count for out, count in zip(outputs, counts)]


def pre_cfg(model, options: dict, conds: list, out: list, x, sigma, cond_scale: float) -> list:
    """The predictions after the model's sampler_pre_cfg_functions."""
    for function in options.get("sampler_pre_cfg_function", ()):
        out = function({"conds": conds, "conds_out": out, "cond_scale": cond_scale, "timestep": sigma, "input": x,
                        "sigma": sigma, "model": model, "model_options": options})
    return out


def post_cfg(model, options: dict, guided, x, sigma, cond_scale: float, cond, uncond, cond_pred, uncond_pred,
             **extra):
    """`guided` after the model's sampler_post_cfg_functions (`extra`: further arguments a guider gives them)."""
    for function in options.get("sampler_post_cfg_function", ()):
        guided = function({"denoised": guided, "cond": cond, "uncond": uncond, "cond_scale": cond_scale,
                           "model": model, "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": sigma,
                           "model_options": options, "input": x, **extra})
    return guided


def cfg_function(model, options: dict, cond_pred, uncond_pred, cond_scale: float, x, sigma, cond=None, uncond=None):
    """Classifier-free guidance of two predictions, or the model's sampler_cfg_function in its place, then its
    post-cfg functions (ComfyUI's cfg_function)."""
    if "sampler_cfg_function" in options:
        guided = x - options["sampler_cfg_function"]({
            "cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": sigma, "input": x,
            "sigma": sigma, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred, "model": model,
            "model_options": options, "input_cond": cond, "input_uncond": uncond})
    else:
        guided = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    return post_cfg(model, options, guided, x, sigma, cond_scale, cond, uncond, cond_pred, uncond_pred)


def _optimise_cfg1(options: dict, keep_all: bool) -> bool:
    """Whether passes whose scale is 1 may be left out (CFG++ samplers need the negative prediction)."""
    return not keep_all and not options.get("disable_cfg1_optimization", False)


class _Denoiser:
    """`denoiser(x, sigma) -> denoised` for the samplers; `denoise_with_uncond` also gives the negative prediction
    the guidance used (CFG++ samplers step along it)."""

    def __init__(self, model):
        self.model = model
        self.model_sampling = model.model_sampling

    def _predict(self, x, sigma, keep_all: bool):
        raise NotImplementedError

    def __call__(self, x, sigma, **extra_args):
        return self._predict(x, sigma, keep_all=False)[0]

    def denoise_with_uncond(self, x, sigma, **extra_args):
        return self._predict(x, sigma, keep_all=True)


class CFGDenoiser(_Denoiser):
    """Classifier-free guidance of a positive and a negative conditioning (ComfyUI's sampling_function)."""

    def __init__(self, model, positive: list[Cond], negative: list[Cond], cfg: float):
        super().__init__(model)
        self.positive, self.negative, self.cfg = positive, negative, cfg

    def _predict(self, x, sigma, keep_all: bool):
        options = model_options(self.model)
        uncond = None if math.isclose(self.cfg, 1.0) and _optimise_cfg1(options, keep_all) else self.negative
        conds = [self.positive, uncond]
        out = pre_cfg(self.model, options, conds, calc_cond_batch(self.model, conds, x, sigma), x, sigma, self.cfg)
        return cfg_function(self.model, options, out[0], out[1], self.cfg, x, sigma, self.positive, uncond), out[1]


class DualCFGDenoiser(_Denoiser):
    """Two guidance scales (DualCFGGuider): "regular" adds cfg_conds * (positive - middle) to CFG of the middle
    conditioning against the negative at cfg_cond2_negative; "nested" guides the positive against the middle at
    cfg_conds, then that result against the negative at cfg_cond2_negative."""

    def __init__(self, model, positive: list[Cond], middle: list[Cond], negative: list[Cond], cfg_conds: float,
                 cfg_cond2_negative: float, nested: bool):
        super().__init__(model)
        self.positive, self.middle, self.negative = positive, middle, negative
        self.cfg_conds, self.cfg_negative, self.nested = cfg_conds, cfg_cond2_negative, nested

    def _predict(self, x, sigma, keep_all: bool):
        options, model = model_options(self.model), self.model
        negative, middle = self.negative, self.middle
        if self.nested:
            neg, mid, pos = calc_cond_batch(model, [negative, middle, self.positive], x, sigma)
            text = cfg_function(model, options, pos, mid, self.cfg_conds, x, sigma, self.positive, middle)
            return neg + self.cfg_negative * (text - neg), mid
        if math.isclose(self.cfg_negative, 1.0) and _optimise_cfg1(options, keep_all):
            negative = None
            if math.isclose(self.cfg_conds, 1.0):
                middle = None
        neg, mid, pos = calc_cond_batch(model, [negative, middle, self.positive], x, sigma)
        guided = cfg_function(model, options, mid, neg, self.cfg_negative, x, sigma, middle, negative)
        return guided + (pos - mid) * self.cfg_conds, neg


def perp_neg(x, positive, negative, empty, neg_scale: float, cond_scale: float):
    """Perp-Neg (Armandpour et al. 2023): guidance along the positive prompt minus only the part of the negative
    prompt's direction that is perpendicular to it (both taken from the empty prompt's prediction)."""
    pos, neg = positive - empty, negative - empty
    perpendicular = neg - (torch.mul(neg, pos).sum() / torch.norm(pos) ** 2) * pos
    return empty + cond_scale * (pos - perpendicular * neg_scale)


class PerpNegDenoiser(_Denoiser):
    """PerpNegGuider: Perp-Neg of a positive and a negative conditioning against an empty prompt's."""

    def __init__(self, model, positive: list[Cond], negative: list[Cond], empty: list[Cond], cfg: float,
                 neg_scale: float):
        super().__init__(model)
        self.positive, self.negative, self.empty = positive, negative, empty
        self.cfg, self.neg_scale = cfg, neg_scale

    def _predict(self, x, sigma, keep_all: bool):
        options, model = model_options(self.model), self.model
        negative, empty = self.negative, self.empty
        if math.isclose(self.neg_scale, 0.0) and _optimise_cfg1(options, keep_all):
            negative = None
            if math.isclose(self.cfg, 1.0):
                empty = None
        conds = [self.positive, negative, empty]
        pos, neg, nothing = pre_cfg(model, options, conds, calc_cond_batch(model, conds, x, sigma), x, sigma,
                                    self.cfg)
        guided = perp_neg(x, pos, neg, nothing, self.neg_scale, self.cfg)
        return post_cfg(model, options, guided, x, sigma, self.cfg, self.positive, negative, pos, neg,
                        empty_cond=empty, empty_cond_denoised=nothing), neg
