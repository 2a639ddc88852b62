"""ComfyUI's UNet patch points on a diffusers UNet: the transformer_options "patches" and "patches_replace" that
patch nodes (built-in and custom) put in a MODEL's model_options, applied while one UNet call runs.

Blocks are named as in the original (LDM) UNet that ComfyUI runs: ("input", i) for conv_in, each res block (with
its transformer) and each downsampler in order, ("middle", 0), ("output", i) for each up-side res block. At each:
  input_block_patch: h = f(h, transformer_options) on what an input block hands on (and keeps as its skip);
  output_block_patch: h, hsp = f(h, hsp, transformer_options) before an output block joins h and its skip hsp;
  attn1_patch / attn2_patch: n, context, value = f(n, context, value, extra_options) before self / cross attention;
  patches_replace["attn1" | "attn2"][(block, id) or (block, id, block_index)]: out = f(q, k, v, extra_options) in
      place of the attention between the q/k/v projections and the output projection;
  attn1_output_patch / attn2_output_patch: out = f(out, extra_options) after the attention.
extra_options carries transformer_options' other keys plus block, block_index, transformer_index, n_heads, dim_head,
original_shape and activations_shape, as ComfyUI passes them. Nothing is hooked when a call has no patches.
"""
from __future__ import annotations

import contextlib
import dataclasses
import weakref

import torch
import torch.nn.functional as F

ATTENTION_PATCHES = ("attn1_patch", "attn2_patch", "attn1_output_patch", "attn2_output_patch")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask=None) -> torch.Tensor:
    """Multi-head scaled dot-product attention on [batch, tokens, heads * dim] projections, as ComfyUI's
    optimized_attention: the shape the replace patches work in."""
    b, _, inner = q.shape
    split = [t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*split, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, -1, inner)


@dataclasses.dataclass(frozen=True)
class Place:
    block: tuple[str, int]
    block_index: int  # of the transformer layer inside its transformer
    transformer_index: int  # of the transformer among all of the UNet's, in the order they run


@dataclasses.dataclass
class UNetLayout:
    """Where ComfyUI's patch points are in one diffusers UNet."""
    input_blocks: list  # (id, module whose output the block hands on)
    output_resnets: list  # (id, res block, channels of the skip it takes)
    attentions: dict  # attention module -> (Place, "attn1" | "attn2")
    transformers: list  # Transformer2DModel modules


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # UNet -> its UNetLayout, while it lives


def _layout(unet) -> UNetLayout:
    if unet not in _LAYOUTS:
        _LAYOUTS[unet] = _find_layout(unet)
    return _LAYOUTS[unet]


def _find_layout(unet) -> UNetLayout:
    inputs, skip_channels, attentions, transformers = [(0, unet.conv_in)], [unet.conv_in.out_channels], {}, []

    def transformer(module, block):
        transformers.append(module)
        for index, layer in enumerate(module.transformer_blocks):
            place = Place(block, index, len(transformers) - 1)
            attentions[layer.attn1] = (place, "attn1")
            if getattr(layer, "attn2", None) is not None:
                attentions[layer.attn2] = (place, "attn2")

    def res_blocks(stage, side: str, count: int):
        """(id, res block, its transformer or None) of a diffusers down / up block, the transformers placed."""
        for j, resnet in enumerate(stage.resnets):
            attn = stage.attentions[j] if getattr(stage, "attentions", None) else None
            if attn is not None:
                transformer(attn, (side, count + j))
            yield count + j, resnet, attn

    for down in unet.down_blocks:
        for i, resnet, attn in res_blocks(down, "input", len(inputs)):
            inputs.append((i, attn if attn is not None else resnet))
            skip_channels.append(resnet.out_channels)
        for sampler in down.downsamplers or ():
            inputs.append((len(inputs), sampler))
            skip_channels.append(sampler.out_channels)
    for attn in getattr(unet.mid_block, "attentions", None) or ():
        transformer(attn, ("middle", 0))
    outputs = []
    for up in unet.up_blocks:
        for i, resnet, _ in res_blocks(up, "output", len(outputs)):
            outputs.append((i, resnet, skip_channels[-1 - i]))
    return UNetLayout(inputs, outputs, attentions, transformers)


class _Call:
    """One UNet call's transformer_options, split the way the patch functions see them."""

    def __init__(self, options: dict, x: torch.Tensor):
        self.patches = options.get("patches", {})
        self.replace = options.get("patches_replace", {})
        self.options = {k: v for k, v in options.items() if k not in ("patches", "patches_replace")}
        self.options["original_shape"] = list(x.shape)
        self.activations_shape = None

    def transformer_options(self, **update) -> dict:
        return {**self.options, "patches": self.patches, "patches_replace": self.replace, **update}

    def extra_options(self, place: Place, attn) -> dict:
        return {**self.options, "block": place.block, "block_index": place.block_index,
                "transformer_index": place.transformer_index, "activations_shape": self.activations_shape,
                "n_heads": attn.heads, "dim_head": attn.inner_dim // attn.heads, "attn_precision": None}


class _PatchedAttention:
    """An attention processor that applies the call's attention patches around the module's own processor."""

    def __init__(self, call: _Call, place: Place, kind: str, inner):
        self.call, self.place, self.kind, self.inner = call, place, kind, inner

    def _replacement(self):
        table = self.call.replace.get(self.kind, {})
        for key in ((*self.place.block, self.place.block_index), self.place.block):
            if key in table:
                return table[key]
        return None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        patches, extra = self.call.patches, self.call.extra_options(self.place, attn)
        n, context, value = hidden_states, encoder_hidden_states, None
        for patch in patches.get(self.kind + "_patch", ()):
            if context is None:  # self-attention attends to n itself
                context = n
            value = context if value is None else value
            n, context, value = patch(n, context, value, extra)
        replacement = self._replacement()
        if replacement is not None or value is not None:
            context = n if context is None else context
            value = context if value is None else value
            q, k, v = attn.to_q(n), attn.to_k(context), attn.to_v(value)
            out = replacement(q, k, v, extra) if replacement is not None else attention(q, k, v, attn.heads)
            out = attn.to_out[1](attn.to_out[0](out))
        else:
            out = self.inner(attn, n, context, attention_mask, **kwargs)
        for patch in patches.get(self.kind + "_output_patch", ()):
            out = patch(out, extra)
        return out


def with_patch(model_options: dict, name: str, patch) -> dict:
    """A copy of `model_options` with `patch` appended to transformer_options["patches"][name]."""
    options = dict(model_options)
    transformer = dict(options.get("transformer_options", {}))
    patches = dict(transformer.get("patches", {}))
    patches[name] = [*patches.get(name, []), patch]
    options["transformer_options"] = {**transformer, "patches": patches}
    return options


def with_replacement(model_options: dict, patch, name: str, block_name: str, number: int,
                     transformer_index: int | None = None) -> dict:
    """A copy of `model_options` where `patch` replaces attention `name` ("attn1" / "attn2") in block
    (block_name, number), or only in its transformer layer `transformer_index` (ComfyUI's
    set_model_options_patch_replace)."""
    options = dict(model_options)
    transformer = dict(options.get("transformer_options", {}))
    replace = dict(transformer.get("patches_replace", {}))
    key = (block_name, number) if transformer_index is None else (block_name, number, transformer_index)
    replace[name] = {**replace.get(name, {}), key: patch}
    options["transformer_options"] = {**transformer, "patches_replace": replace}
    return options


def _apply_input_patch(call: _Call, block_id: int):
    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        for patch in call.patches["input_block_patch"]:
            h = patch(h, call.transformer_options(block=("input", block_id)))
        return (h, *output[1:]) if isinstance(output, tuple) else h
    return hook


def _apply_output_patch(call: _Call, block_id: int, skip_channels: int):
    def hook(module, args):
        joined, *rest = args
        h, hsp = joined[:, :joined.shape[1] - skip_channels], joined[:, joined.shape[1] - skip_channels:]
        for patch in call.patches["output_block_patch"]:
            h, hsp = patch(h, hsp, call.transformer_options(block=("output", block_id)))
        return (torch.cat([h, hsp], dim=1), *rest)
    return hook


@contextlib.contextmanager
def applied(unet, transformer_options: dict, x: torch.Tensor):
    """Apply transformer_options' UNet patches to `unet` while the block runs (a no-op without any)."""
    patches, replace = transformer_options.get("patches", {}), transformer_options.get("patches_replace", {})
    if not any(patches.values()) and not any(replace.values()):
        yield
        return
    layout, call, hooks, processors = _layout(unet), _Call(transformer_options, x), [], {}
    try:
        if patches.get("input_block_patch"):
            hooks += [module.register_forward_hook(_apply_input_patch(call, i)) for i, module in layout.input_blocks]
        if patches.get("output_block_patch"):
            hooks += [resnet.register_forward_pre_hook(_apply_output_patch(call, i, skip))
                      for i, resnet, skip in layout.output_resnets]
        if any(patches.get(name) for name in ATTENTION_PATCHES) or any(replace.values()):
            hooks += [t.register_forward_pre_hook(lambda m, args: setattr(call, "activations_shape",
                                                                          list(args[0].shape)))
                      for t in layout.transformers]
            for attn, (place, kind) in layout.attentions.items():
                processors[attn] = attn.processor
                attn.processor = _PatchedAttention(call, place, kind, attn.processor)
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for attn, processor in processors.items():
            attn.processor = processor
