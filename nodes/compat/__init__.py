"""The modules nodes written for ComfyUI import (`folder_paths`, `comfy.*`, `comfy_execution.*`, `comfy_api.*`),
backed by comfyd's engine. `install()` (run before custom node packages load) lets `import comfy.utils` find
`nodes.compat.comfy.utils`: one module object under both names, so a pack that rebinds an attribute changes it
for everyone. `nodes` and `server` are comfyd's own packages, which export what packs take from them."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

ROOTS = frozenset({"folder_paths", "comfy", "comfy_execution", "comfy_api", "comfy_extras", "execution",
                   "node_helpers", "latent_preview"})


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `<root>...` to the already imported `nodes.compat.<root>...` module."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in ROOTS:
            return None
        try:
            if importlib.util.find_spec(f"{__name__}.{fullname}") is None:
                return None
        except ModuleNotFoundError:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{spec.name}")
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        # already executed under its own name; give back the spec the import machinery replaced by the alias's
        module.__spec__ = module.__spec__.loader_state


def install() -> None:
    if not any(isinstance(finder, _Aliases) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Aliases())
