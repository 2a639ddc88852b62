"""`comfy.ops`: the layer namespaces ComfyUI builds models with. Packs build their own modules from them; here
they are torch's layers without weight initialisation (the weights get loaded over it anyway)."""
from __future__ import annotations

import torch


def _uninitialised(layer: type) -> type:
    return type(layer.__name__, (layer,), {"reset_parameters": lambda self: None, "__module__": __name__})


class disable_weight_init:
    Linear = _uninitialised(torch.nn.Linear)
    Conv1d = _uninitialised(torch.nn.Conv1d)
    Conv2d = _uninitialised(torch.nn.Conv2d)
    Conv3d = _uninitialised(torch.nn.Conv3d)
    GroupNorm = _uninitialised(torch.nn.GroupNorm)
    LayerNorm = _uninitialised(torch.nn.LayerNorm)
    ConvTranspose2d = _uninitialised(torch.nn.ConvTranspose2d)
    ConvTranspose1d = _uninitialised(torch.nn.ConvTranspose1d)
    Embedding = _uninitialised(torch.nn.Embedding)


class manual_cast(disable_weight_init):
    """comfyd casts weights where it runs the model, so the manual-cast layers are the plain ones."""
