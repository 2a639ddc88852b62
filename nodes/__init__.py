"""comfyd's node classes (ComfyUI's names and semantics) and the registry that loads them.

What custom nodes written for ComfyUI take from its `nodes` module is here too: `MAX_RESOLUTION`,
`NODE_CLASS_MAPPINGS` and `NODE_DISPLAY_NAME_MAPPINGS` (the registry points the mappings at its own tables when it
loads packs), every built-in node class ComfyUI defines in nodes.py under its name (`from nodes import KSampler`),
`common_ksampler`, `before_node_execution`, `interrupt_processing` and `EXTENSION_WEB_DIRS` (package name -> web
folder: packs that add themselves there, as Impact Pack does, have it served like a WEB_DIRECTORY).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util

MAX_RESOLUTION = 16384
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
EXTENSION_WEB_DIRS: dict[str, str] = {}


@functools.cache
def builtin_classes(python_module: str = "nodes") -> dict[str, type]:
    """The built-in node classes ComfyUI defines in `python_module` ("nodes", "comfy_extras.nodes_latent", ...),
    by node type and by class name (which differ for a few, e.g. "Epsilon Scaling" / EpsilonScaling)."""
    from .registry import BUILTIN_MODULES

    found = {}
    for module_name in BUILTIN_MODULES:
        for name, cls in importlib.import_module(module_name).NODE_CLASS_MAPPINGS.items():
            if getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes") == python_module:
                found[name] = found[cls.__name__] = cls
    return found


def __getattr__(name: str):
    # Dunder probes and this package's own submodules (asked for by `from . import x` before x is imported) must
    # not import every node module: the registry itself is one of them.
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is None:
        cls = builtin_classes().get(name)
        if cls is not None:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=1.0,
                    disable_noise=False, start_step=None, last_step=None, force_full_denoise=False):
    """ComfyUI's KSampler body, (LATENT,): noise from the seed, then `comfy.sample.sample` with a preview callback,
    each looked up when called, so a pack that rebinds them changes what this does (as in ComfyUI)."""
    import torch

    from .compat import latent_preview
    from .compat.comfy import sample

    latent_image = sample.fix_empty_latent_channels(model, latent["samples"])
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout)
    else:
        noise = sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    samples = sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                            denoise=denoise, disable_noise=disable_noise, start_step=start_step, last_step=last_step,
                            force_full_denoise=force_full_denoise, noise_mask=latent.get("noise_mask"),
                            callback=latent_preview.prepare_callback(model, steps), seed=seed)
    return (dict(latent, samples=samples),)


def before_node_execution() -> None:
    """Raises when the running prompt was interrupted."""
    from engine import context

    context.check_interrupted()


def interrupt_processing(value: bool = True) -> None:
    from .compat.comfy import model_management

    model_management.interrupt_current_processing(value)
