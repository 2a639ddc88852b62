"""`comfy_extras.*`: ComfyUI's node modules beside nodes.py. Each module here gives the built-in node classes that
ComfyUI defines in its namesake (`from comfy_extras.nodes_latent import LatentBatch`), by node type and class
name."""
from __future__ import annotations

import nodes


def exports(module_name: str):
    """The module `__getattr__` of `module_name` (one of ours), which finds the built-in classes of its namesake."""
    upstream = "comfy_extras." + module_name.rpartition(".")[2]

    def __getattr__(name: str):
        cls = nodes.builtin_classes(upstream).get(name)
        if cls is None:
            raise AttributeError(f"module {upstream!r} has no attribute {name!r}")
        return cls

    return __getattr__
