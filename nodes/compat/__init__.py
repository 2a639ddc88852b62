"""Import names that nodes written for ComfyUI use (`folder_paths`, `comfy.utils`, `comfy.model_management`,
`comfy.samplers`, `comfy.model_patcher`, `comfy.ldm.modules.attention`), backed by comfyd's engine. Installed into
`sys.modules` only for names nothing else provides, right before custom node packages load."""
from __future__ import annotations

import importlib
import sys

ALIASES = {
    "folder_paths": "nodes.compat.folder_paths",
    "comfy": "nodes.compat.comfy",
    "comfy.utils": "nodes.compat.comfy.utils",
    "comfy.model_management": "nodes.compat.comfy.model_management",
    "comfy.samplers": "nodes.compat.comfy.samplers",
    "comfy.model_patcher": "nodes.compat.comfy.model_patcher",
    "comfy.ldm": "nodes.compat.comfy.ldm",
    "comfy.ldm.modules": "nodes.compat.comfy.ldm.modules",
    "comfy.ldm.modules.attention": "nodes.compat.comfy.ldm.modules.attention",
}


def install() -> None:
    for name, target in ALIASES.items():
        if name not in sys.modules:
            sys.modules[name] = importlib.import_module(target)
