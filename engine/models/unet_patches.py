"""ComfyUI's UNet patch points on a diffusers UNet: the transformer_options "patches" and "patches_replace" that
patch nodes (built-in and custom) put in a MODEL's model_options, applied while one UNet call runs.

Blocks are named as in the original (LDM) UNet that ComfyUI runs: ("input", i) for conv_in, each res block (with
its transformer) and each downsampler in order, ("middle", 0), ("output", i) for each up-side res block. At each:
  input_block_patch: h = f(h, transformer_options) on what an input block hands on (and keeps as its skip);
  input_block_patch_after_skip: h = f(h, transformer_options) on what it hands on, after its skip was kept;
  output_block_patch: h, hsp = f(h, hsp, transformer_options) before an output block joins h and its skip hsp;
  attn1_patch / attn2_patch: n, context, value = f(n, context, value, extra_options) before self / cross attention;
  patches_replace["attn1" | "attn2"][(block, id) or (block, id, block_index)]: out = f(q, k, v, extra_options) in
      place of the attention between the q/k/v projections and the output projection;
  attn1_output_patch / attn2_output_patch: out = f(out, extra_options) after the attention.
extra_options carries transformer_options' other keys plus block, block_index, transformer_index, n_heads, dim_head,
original_shape and activations_shape, as ComfyUI passes them. Nothing is hooked when a call has no patches.

With block patches the up blocks run ComfyUI's way (_up_block_forward): each output block's patches see h and its
skip before they are joined, and an upsampler enlarges h to the size of the skip it meets next, so that patches
may change the sizes in between (Kohya's Deep Shrink does).
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


BLOCK_PATCHES = ("input_block_patch", "input_block_patch_after_skip", "output_block_patch")
UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")  # the diffusers up blocks _up_block_forward runs


@dataclasses.dataclass
class UNetLayout:
    """Where ComfyUI's patch points are in one diffusers UNet."""
    input_blocks: list  # (id, module whose output the block hands on)
    consumers: list  # (id, module that takes what input block `id` hands on as its first argument)
    up_blocks: list  # (id of its first output block, diffusers up block)
    attentions: dict  # attention module -> (Place, "attn1" | "attn2")
    transformers: list  # Transformer2DModel modules


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # UNet -> its UNetLayout, while it lives


def _layout(unet) -> UNetLayout:
    if unet not in _LAYOUTS:
        _LAYOUTS[unet] = _find_layout(unet)
    return _LAYOUTS[unet]


def _find_layout(unet) -> UNetLayout:
    inputs, entries, attentions, transformers = [(0, unet.conv_in)], [], {}, []

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
            entries.append(resnet)
        for sampler in down.downsamplers or ():
            inputs.append((len(inputs), sampler))
            entries.append(sampler)
    entries.append(unet.mid_block if unet.mid_block is not None else unet.up_blocks[0])
    for attn in getattr(unet.mid_block, "attentions", None) or ():
        transformer(attn, ("middle", 0))
    up_blocks, count = [], 0
    for up in unet.up_blocks:
        up_blocks.append((count, up))
        count += len(list(res_blocks(up, "output", count)))
    return UNetLayout(inputs, list(enumerate(entries)), up_blocks, attentions, transformers)


class _Call:
    """One UNet call's transformer_options, split the way the patch functions see them."""

    def __init__(self, options: dict, x: torch.Tensor):
        self.patches = options.get("patches", {})
        self.replace = options.get("patches_replace", {})
        self.options = {k: v for k, v in options.items() if k not in ("patches", "patches_replace")}
        self.options["original_shape"] = list(x.shape)
        self.activations_shape = None
        self.skip_sizes = []  # (height, width) of each input block's skip, in order

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


def _run_block_patches(call: _Call, name: str, h: torch.Tensor, block_id: int) -> torch.Tensor:
    for patch in call.patches.get(name, ()):
        h = patch(h, call.transformer_options(block=("input", block_id)))
    return h


def _input_block_hook(call: _Call, block_id: int):
    """On the output of input block `block_id`: its input_block_patches, then its skip's size noted."""
    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = _run_block_patches(call, "input_block_patch", h, block_id)
        call.skip_sizes.append(tuple(h.shape[2:]))
        return (h, *output[1:]) if isinstance(output, tuple) else h
    return hook


def _after_skip_hook(call: _Call, block_id: int):
    """On the input of the module after input block `block_id`, which diffusers has already kept as the skip."""
    def hook(module, args, kwargs):
        if args:
            return (_run_block_patches(call, "input_block_patch_after_skip", args[0], block_id), *args[1:]), kwargs
        h = _run_block_patches(call, "input_block_patch_after_skip", kwargs["hidden_states"], block_id)
        return args, {**kwargs, "hidden_states": h}
    return hook


def _up_block_forward(call: _Call, block, first_id: int):
    """A forward for a diffusers up block that does what it does, with each output block's patches applied to h
    and its skip before they are joined and the upsampler aiming at the next skip's size (as ComfyUI's UNet)."""
    if type(block).__name__ not in UP_BLOCKS:
        raise NotImplementedError(f"UNet block patches on a {type(block).__name__} are not supported")
    attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)

    def forward(hidden_states, res_hidden_states_tuple, temb=None, encoder_hidden_states=None,
                cross_attention_kwargs=None, upsample_size=None, attention_mask=None, encoder_attention_mask=None,
                **unused):
        h, skips = hidden_states, list(res_hidden_states_tuple)
        for j, (resnet, attn) in enumerate(zip(block.resnets, attentions)):
            hsp = skips.pop()
            for patch in call.patches.get("output_block_patch", ()):
                h, hsp = patch(h, hsp, call.transformer_options(block=("output", first_id + j)))
            h = resnet(torch.cat([h, hsp], dim=1), temb)
            if attn is not None:
                h = attn(h, encoder_hidden_states=encoder_hidden_states, cross_attention_kwargs=cross_attention_kwargs,
                         attention_mask=attention_mask, encoder_attention_mask=encoder_attention_mask,
                         return_dict=False)[0]
        # the skip the next output block takes: skips are taken last first, one per output block
        following = len(call.skip_sizes) - 1 - (first_id + len(block.resnets))
        for upsampler in block.upsamplers or ():
            h = upsampler(h, call.skip_sizes[following] if following >= 0 else upsample_size)
        return h
    return forward


@contextlib.contextmanager
def applied(unet, transformer_options: dict, x: torch.Tensor):
    """Apply transformer_options' UNet patches to `unet` while the block runs (a no-op without any)."""
    patches, replace = transformer_options.get("patches", {}), transformer_options.get("patches_replace", {})
    if not any(patches.values()) and not any(replace.values()):
        yield
        return
    layout, call, hooks, processors, forwards = _layout(unet), _Call(transformer_options, x), [], {}, []
    try:
        if any(patches.get(name) for name in BLOCK_PATCHES):
            hooks += [module.register_forward_hook(_input_block_hook(call, i)) for i, module in layout.input_blocks]
            if patches.get("input_block_patch_after_skip"):
                hooks += [module.register_forward_pre_hook(_after_skip_hook(call, i), with_kwargs=True)
                          for i, module in layout.consumers]
            for first_id, block in layout.up_blocks:
                block.forward = _up_block_forward(call, block, first_id)
                forwards.append(block)
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
        for block in forwards:
            del block.forward  # the class's forward again
        for attn, processor in processors.items():
            attn.processor = processor
