"""The node registry: built-in node modules and `custom_nodes/` packages register through the same call."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import logging
import sys
import traceback
import types
from pathlib import Path

import nodes
from engine import nodespec

from . import compat

log = logging.getLogger("comfyd.nodes")

BUILTIN_MODULES = (
    "nodes.primitives",
    "nodes.image",
    "nodes.image_transform",
    "nodes.postprocessing",
    "nodes.strings",
    "nodes.rebatch",
    "nodes.latent_files",
    "nodes.loaders",
    "nodes.text_encode",
    "nodes.vae",
    "nodes.sampling",
    "nodes.custom_sampling",
    "nodes.lora",
    "nodes.gligen",
    "nodes.clip_vision",
    "nodes.controlnet",
    "nodes.latent",
    "nodes.conditioning",
    "nodes.mask",
    "nodes.upscale",
    "nodes.style_model",
    "nodes.model_sampling",
    "nodes.guidance",
    "nodes.unet_patches",
    "nodes.attention_multiply",
    "nodes.flux",
    "nodes.sd3",
    "nodes.edit_model",
    "nodes.differential_diffusion",
    "nodes.model_merging",
    "nodes.morphology",
    "nodes.image_animation",
    "nodes.latent_operations",
    "nodes.advanced_samplers",
)


@dataclasses.dataclass
class CustomNodePackage:
    name: str
    path: Path
    web_directory: Path | None
    error: str | None = None


class NodeRegistry:
    def __init__(self):
        self.classes: dict[str, type] = {}
        self.display_names: dict[str, str] = {}
        self.python_modules: dict[str, str] = {}
        self.packages: list[CustomNodePackage] = []
        self.folders = None  # the engine.folders.Folders active while custom nodes loaded

    def register(self, mappings: dict, display_names: dict | None = None, *, python_module: str = "nodes") -> None:
        for name, cls in mappings.items():
            self.classes[name] = cls
            self.python_modules[name] = getattr(cls, "RELATIVE_PYTHON_MODULE", python_module)
        for name, display in (display_names or {}).items():
            self.display_names[name] = display

    def register_module(self, module, *, python_module: str = "nodes") -> None:
        self.register(
            getattr(module, "NODE_CLASS_MAPPINGS", {}),
            getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}),
            python_module=python_module,
        )

    def get(self, name) -> type | None:
        return self.classes.get(name) if isinstance(name, str) else None

    def __contains__(self, name) -> bool:
        return self.get(name) is not None

    # -- /object_info -------------------------------------------------------------------------------------

    def info(self, name: str) -> dict:
        """One node's definition in ComfyUI's /object_info shape."""
        cls = self.classes[name]
        describe = getattr(cls, "GET_NODE_INFO_V1", None)
        if describe is not None:  # a V3 node describes itself, in ComfyUI's shape for those
            return {**describe(), "python_module": self.python_modules.get(name, "nodes")}
        types = nodespec.input_types(cls)
        outputs = list(nodespec.return_types(cls))
        info = {
            "input": types,
            "input_order": {category: list(inputs.keys()) for category, inputs in types.items()},
            "output": outputs,
            "output_is_list": list(nodespec.output_is_list(cls)),
            "output_name": list(getattr(cls, "RETURN_NAMES", outputs)),
            "name": name,
            "display_name": self.display_names.get(name, getattr(cls, "DISPLAY_NAME", name)),
            "description": getattr(cls, "DESCRIPTION", ""),
            "python_module": self.python_modules.get(name, "nodes"),
            "category": getattr(cls, "CATEGORY", "sd"),
            "output_node": nodespec.is_output_node(cls),
        }
        if hasattr(cls, "OUTPUT_TOOLTIPS"):
            info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
        # As upstream: each flag a class sets is stated; ComfyUI's V3 nodes (here: classes setting API_NODE)
        # state all three.
        v3 = hasattr(cls, "API_NODE")
        flags = (("DEPRECATED", "deprecated"), ("EXPERIMENTAL", "experimental"), ("API_NODE", "api_node"))
        for attribute, key in flags:
            if v3 or hasattr(cls, attribute):
                info[key] = getattr(cls, attribute, False)
        return info

    def all_info(self) -> dict:
        out = {}
        for name in self.classes:
            try:
                out[name] = self.info(name)
            except Exception:  # one broken node definition must not hide the others
                log.exception("could not describe node %s", name)
        return out

    # -- loading ------------------------------------------------------------------------------------------

    def load_builtins(self, modules=BUILTIN_MODULES) -> None:
        for module_name in modules:
            self.register_module(importlib.import_module(module_name))

    def load_custom_nodes(self, directory: Path) -> list[CustomNodePackage]:
        """Import every package (or single .py file) in `directory`; a broken one is reported and skipped."""
        directory = Path(directory)
        loaded = []
        if not directory.is_dir():
            return loaded
        compat.install()
        package_path = _custom_nodes_package().__path__  # packs importing their own subpackages need it
        if str(directory.resolve()) not in package_path:
            package_path.append(str(directory.resolve()))
        nodes.NODE_CLASS_MAPPINGS = self.classes
        nodes.NODE_DISPLAY_NAME_MAPPINGS = self.display_names
        entries = [entry for entry in sorted(directory.iterdir())
                   if not entry.name.startswith((".", "__")) and not entry.name.endswith(".disabled")]
        for entry in entries:  # as ComfyUI: every pack's prestartup_script.py before any pack is imported
            if (entry / "prestartup_script.py").is_file():
                _run_prestartup(entry)
        for entry in entries:
            if entry.is_dir() and (entry / "__init__.py").is_file():
                init = entry / "__init__.py"
            elif entry.is_file() and entry.suffix == ".py":
                init = entry
            else:
                continue
            loaded.append(self._load_package(entry, init))
        self.packages.extend(loaded)
        return loaded

    def _load_package(self, path: Path, init: Path) -> CustomNodePackage:
        module_name = f"custom_nodes.{path.stem}"
        package = CustomNodePackage(path.stem, path, None)
        try:
            spec = importlib.util.spec_from_file_location(
                module_name, init, submodule_search_locations=[str(path)] if path.is_dir() else None
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
            display_names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None)
            if mappings is None and hasattr(module, "comfy_entrypoint"):  # as ComfyUI: the V1 mappings win
                mappings, display_names = _extension_mappings(module.comfy_entrypoint)
            if not isinstance(mappings, dict):
                raise ImportError("the package exports no NODE_CLASS_MAPPINGS dict and no comfy_entrypoint")
            self.register(mappings, display_names, python_module=f"custom_nodes.{path.name}")
            web = getattr(module, "WEB_DIRECTORY", None)
            if web:
                web_dir = (path if path.is_dir() else path.parent) / web
                package.web_directory = web_dir.resolve() if web_dir.is_dir() else None
        except Exception:
            sys.modules.pop(module_name, None)
            package.error = traceback.format_exc()
            log.error("cannot load custom node package %s:\n%s", path.name, package.error)
        return package


def _extension_mappings(entrypoint) -> tuple[dict, dict]:
    """The nodes of a V3 pack, from the ComfyExtension its `comfy_entrypoint()` returns: keyed by their schemas'
    node ids, with the display names the schemas give."""
    from .compat.comfy_api.latest import ComfyExtension  # (imports torch: only when a V3 pack loads)

    async def node_list() -> list:
        extension = entrypoint()
        if inspect.isawaitable(extension):
            extension = await extension
        if not isinstance(extension, ComfyExtension):
            raise ImportError(f"comfy_entrypoint() returned {type(extension).__name__}, not a ComfyExtension")
        await extension.on_load()
        listed = await extension.get_node_list()
        if not isinstance(listed, list):
            raise ImportError(f"get_node_list() returned {type(listed).__name__}, not a list of node classes")
        return listed

    mappings, display_names = {}, {}
    for cls in nodespec.settle(node_list()):
        schema = cls.GET_SCHEMA()
        mappings[schema.node_id] = cls
        if schema.display_name is not None:
            display_names[schema.node_id] = schema.display_name
    return mappings, display_names


def _custom_nodes_package():
    """The `custom_nodes` package every pack is loaded under (`custom_nodes.<pack>`), spanning all the folders."""
    package = sys.modules.get("custom_nodes")
    if package is None:
        package = sys.modules["custom_nodes"] = types.ModuleType("custom_nodes")
        package.__path__ = []
    return package


def _run_prestartup(package: Path) -> None:
    """Run a pack's prestartup_script.py; a failing one is logged and the pack still loads."""
    script = package / "prestartup_script.py"
    try:
        spec = importlib.util.spec_from_file_location(f"{package.name}.prestartup_script", script)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except Exception:
        log.error("prestartup script of custom node package %s failed:\n%s", package.name, traceback.format_exc())
