"""Nodes that scale the attention projections' weights of a UNet's self- or cross-attention, or of a CLIP's
self-attention (weight patches: engine.models.weight_scale)."""
from __future__ import annotations

from engine.models.weight_scale import scaled


def _projections(prefix: str, names: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [tuple(f"{prefix}{name}.{kind}" for kind in ("weight", "bias")) for name in names]


class UNetSelfAttentionMultiply:
    ATTENTION = "attn1"

    @classmethod
    def INPUT_TYPES(cls):
        factor = {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}
        return {"required": {"model": ("MODEL", {}),
                             **{name: ("FLOAT", dict(factor)) for name in ("q", "k", "v", "out")}}}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "patch"
    CATEGORY = "_for_testing/attention_experiments"
    DISPLAY_NAME = None
    EXPERIMENTAL = True
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_attention_multiply"

    def patch(self, model, q, k, v, out):
        names = _projections(self.ATTENTION + ".", ("to_q", "to_k", "to_v", "to_out.0"))
        return (scaled(model, dict(zip(names, (q, k, v, out)))),)


class UNetCrossAttentionMultiply(UNetSelfAttentionMultiply):
    ATTENTION = "attn2"


class CLIPAttentionMultiply(UNetSelfAttentionMultiply):
    @classmethod
    def INPUT_TYPES(cls):
        inputs = super().INPUT_TYPES()["required"]
        return {"required": {"clip": ("CLIP", {}), **{k: v for k, v in inputs.items() if k != "model"}}}

    RETURN_TYPES = ("CLIP",)

    def patch(self, clip, q, k, v, out):
        names = _projections("self_attn.", ("q_proj", "k_proj", "v_proj", "out_proj"))
        return (scaled(clip, dict(zip(names, (q, k, v, out)))),)


NODE_CLASS_MAPPINGS = {"UNetSelfAttentionMultiply": UNetSelfAttentionMultiply,
                       "UNetCrossAttentionMultiply": UNetCrossAttentionMultiply,
                       "CLIPAttentionMultiply": CLIPAttentionMultiply}
