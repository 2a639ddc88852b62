"""`comfy.ldm.modules.attention`: the attention function that attention-replacing patches compute with."""
from __future__ import annotations

import functools

from engine.models.unet_patches import attention


def optimized_attention(q, k, v, heads: int, mask=None, attn_precision=None, skip_reshape: bool = False,
                        skip_output_reshape: bool = False, **kwargs):
    """Attention on [batch, tokens, heads * dim] projections; with `skip_reshape` they come split into heads
    ([batch, heads, tokens, dim]), and with `skip_output_reshape` the result stays so."""
    if skip_reshape:
        b, _, tokens, dim = q.shape
        q, k, v = (t.transpose(1, 2).reshape(b, -1, heads * dim) for t in (q, k, v))
    out = attention(q, k, v, heads, mask)
    if skip_output_reshape:
        return out.view(out.shape[0], -1, heads, out.shape[-1] // heads).transpose(1, 2)
    return out


# comfyd computes attention with torch's scaled_dot_product_attention, which masks as well
attention_pytorch = optimized_attention
optimized_attention_masked = optimized_attention


def wrap_attn(func):
    """Lets `transformer_options["optimized_attention_override"]` (a pack's attention switch) take over calls to
    `func`, as ComfyUI's attention functions do; calls made from inside an override go straight to `func`."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if "_inside_attn_wrapper" in kwargs:
            return func(*args, **kwargs)
        kwargs["_inside_attn_wrapper"] = True
        override = (kwargs.get("transformer_options") or {}).get("optimized_attention_override")
        return override(func, *args, **kwargs) if override is not None else func(*args, **kwargs)
    return wrapper
