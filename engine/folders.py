"""Model and data folders with ComfyUI's layout, including `extra_model_paths.yaml` support.

Nodes written for ComfyUI list files with module-level calls (`folder_paths.get_filename_list(...)`) from
classmethods that have no context argument, so the folder table the engine configures is reachable the same way:
`Folders.activate()` installs it for the module-level helpers below.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml

MODEL_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})

# name -> (sub-folders of models/ searched in order, extensions); order is ComfyUI's `/models` order.
MODEL_FOLDERS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "checkpoints": (("checkpoints",), MODEL_EXTENSIONS),
    "configs": (("configs",), frozenset({".yaml"})),
    "loras": (("loras",), MODEL_EXTENSIONS),
    "vae": (("vae",), MODEL_EXTENSIONS),
    "text_encoders": (("text_encoders", "clip"), MODEL_EXTENSIONS),
    "diffusion_models": (("unet", "diffusion_models"), MODEL_EXTENSIONS),
    "clip_vision": (("clip_vision",), MODEL_EXTENSIONS),
    "style_models": (("style_models",), MODEL_EXTENSIONS),
    "embeddings": (("embeddings",), MODEL_EXTENSIONS),
    "diffusers": (("diffusers",), frozenset({"folder"})),
    "vae_approx": (("vae_approx",), MODEL_EXTENSIONS),
    "controlnet": (("controlnet", "t2i_adapter"), MODEL_EXTENSIONS),
    "gligen": (("gligen",), MODEL_EXTENSIONS),
    "upscale_models": (("upscale_models",), MODEL_EXTENSIONS),
    "custom_nodes": ((), frozenset()),
    "hypernetworks": (("hypernetworks",), MODEL_EXTENSIONS),
    "photomaker": (("photomaker",), MODEL_EXTENSIONS),
    "classifiers": (("classifiers",), frozenset({""})),
    "model_patches": (("model_patches",), MODEL_EXTENSIONS),
    "audio_encoders": (("audio_encoders",), MODEL_EXTENSIONS),
}

# Old folder names that workflows and extra_model_paths files still use.
LEGACY_NAMES = {"clip": "text_encoders", "unet": "diffusion_models"}


class Folders:
    """Where models and the input/output/temp/user data live."""

    def __init__(self, base: Path, *, input_dir: Path, output_dir: Path, temp_dir: Path, user_dir: Path):
        self.base = Path(base).resolve()
        self.input = Path(input_dir).resolve()
        self.output = Path(output_dir).resolve()
        self.temp = Path(temp_dir).resolve()
        self.user = Path(user_dir).resolve()
        models = self.base / "models"
        self._paths: dict[str, list[Path]] = {}
        self._extensions: dict[str, set[str]] = {}  # mutable: custom nodes add extensions to folders
        for name, (subdirs, exts) in MODEL_FOLDERS.items():
            self._paths[name] = [models / sub for sub in subdirs]
            self._extensions[name] = set(exts)
        self._paths["custom_nodes"] = [self.base / "custom_nodes"]

    @classmethod
    def from_settings(cls, settings) -> "Folders":
        folders = cls(
            settings.base_directory,
            input_dir=settings.directory("input"),
            output_dir=settings.directory("output"),
            temp_dir=settings.directory("temp"),
            user_dir=settings.directory("user"),
        )
        for config in settings.extra_model_paths_config:
            folders.load_extra_paths(config)
        return folders

    def create_dirs(self) -> None:
        for directory in (self.input, self.output, self.temp, self.user):
            directory.mkdir(parents=True, exist_ok=True)
        for name, paths in self._paths.items():
            if name != "custom_nodes" and paths:
                paths[0].mkdir(parents=True, exist_ok=True)

    # -- model folders -------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._paths)

    def paths(self, name: str) -> list[Path]:
        return list(self._paths.get(LEGACY_NAMES.get(name, name), ()))

    def live_paths(self, name: str) -> list[Path]:
        """The folder's own list of roots: edits to it take effect (ComfyUI's folder table is mutable)."""
        return self._paths[LEGACY_NAMES.get(name, name)]

    def extensions(self, name: str) -> set[str]:
        """The folder's own set of file extensions listed (empty: every file), mutable as ComfyUI's."""
        return self._extensions[LEGACY_NAMES.get(name, name)]

    def set_folder(self, name: str, paths: list[Path], extensions: set[str]) -> None:
        name = LEGACY_NAMES.get(name, name)
        self._paths[name], self._extensions[name] = list(paths), set(extensions)

    def remove_folder(self, name: str) -> None:
        name = LEGACY_NAMES.get(name, name)
        del self._paths[name]
        self._extensions.pop(name, None)

    def add_path(self, name: str, path: Path, *, first: bool = False) -> None:
        name = LEGACY_NAMES.get(name, name)
        paths = self._paths.setdefault(name, [])
        self._extensions.setdefault(name, set())  # a folder a custom node adds lists every file, as upstream
        path = Path(path)
        if path in paths:
            paths.remove(path)
        paths.insert(0, path) if first else paths.append(path)

    def load_extra_paths(self, yaml_path: Path) -> None:
        """Read ComfyUI's extra_model_paths.yaml format: sections of `folder: path(s)` with optional base_path."""
        yaml_path = Path(yaml_path)
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        for section in config.values():
            if not isinstance(section, dict):
                continue
            section = dict(section)
            base = section.pop("base_path", None)
            first = bool(section.pop("is_default", False))
            if base:
                base = Path(os.path.expandvars(os.path.expanduser(str(base))))
                if not base.is_absolute():
                    base = yaml_path.parent / base
            for name, value in section.items():
                for line in str(value).split("\n"):
                    line = line.strip()
                    if not line:
                        continue
                    path = Path(os.path.expandvars(os.path.expanduser(line)))
                    if base is not None:
                        path = base / path
                    elif not path.is_absolute():
                        path = yaml_path.parent / path
                    self.add_path(name, Path(os.path.normpath(path)), first=first)

    def filenames(self, name: str) -> list[str]:
        """Files of a model folder, relative to their root, '/'-separated, sorted; read from disk each call."""
        return sorted({rel for rel, _ in self._scan(name)})

    def indexed_filenames(self, name: str) -> list[dict]:
        """`{name, pathIndex, modified, created, size}` per file (the first root holding it wins), by name."""
        first: dict[str, int] = {}
        for rel, index in self._scan(name):
            first.setdefault(rel, index)
        out = []
        for rel, index in sorted(first.items()):
            stat = (self._paths[LEGACY_NAMES.get(name, name)][index] / rel).stat()
            out.append({"name": rel, "pathIndex": index, "modified": stat.st_mtime, "created": stat.st_ctime,
                        "size": stat.st_size})
        return out

    def _scan(self, name: str):
        name = LEGACY_NAMES.get(name, name)
        exts = self._extensions.get(name, MODEL_EXTENSIONS)
        for index, root in enumerate(self._paths.get(name, ())):
            if not root.is_dir():
                continue
            for dirpath, dirnames, files in os.walk(root, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel_dir = Path(dirpath).relative_to(root)
                if "folder" in exts:
                    yield from (((rel_dir / d).as_posix(), index) for d in dirnames)
                    continue
                for f in files:
                    if not f.startswith(".") and (not exts or "" in exts or Path(f).suffix.lower() in exts):
                        yield (rel_dir / f).as_posix(), index

    def full_path(self, name: str, filename: str) -> Path | None:
        """The file `filename` of a model folder, or None; never a path outside the folder's roots."""
        if not filename or "\x00" in filename:
            return None
        for root in self._paths.get(LEGACY_NAMES.get(name, name), ()):
            candidate = safe_join(root, filename, allow_symlinks=True)
            if candidate is not None and candidate.is_file():
                return candidate
        return None

    def directory(self, kind: str) -> Path:
        return {"input": self.input, "output": self.output, "temp": self.temp, "user": self.user}[kind]

    def annotated_path(self, name: str, default: str = "input") -> Path | None:
        """A file named as ComfyUI's image widgets name them: `sub/x.png`, optionally suffixed ` [input]`,
        ` [output]` or ` [temp]`; None when the name would leave that folder."""
        if not isinstance(name, str) or not name:
            return None
        kind = default
        for candidate in ("input", "output", "temp"):
            suffix = f" [{candidate}]"
            if name.endswith(suffix):
                name, kind = name[: -len(suffix)], candidate
                break
        return safe_join(self.directory(kind), name) if name else None

    def input_files(self) -> list[str]:
        """Files directly in input/ (what LoadImage lists), sorted."""
        if not self.input.is_dir():
            return []
        return sorted(entry.name for entry in self.input.iterdir() if entry.is_file() and not entry.name.startswith("."))

    # -- process-wide access for node classes --------------------------------------------------------------

    def activate(self) -> None:
        global _active
        with _lock:
            _active = self


def safe_join(root: Path, relative: str, *, allow_symlinks: bool = False) -> Path | None:
    """`root/relative`, or None when it would leave `root`: `..`, absolute paths, NUL bytes, and (unless
    `allow_symlinks`, as model folders need) symlinks that point outside."""
    if not isinstance(relative, str) or "\x00" in relative:
        return None
    root = Path(os.path.abspath(root))
    candidate = Path(os.path.normpath(root / relative))
    if candidate != root and root not in candidate.parents:
        return None
    if not allow_symlinks:
        real_root = root.resolve()
        real = candidate.resolve()
        if real != real_root and real_root not in real.parents:
            return None
    return candidate


_lock = threading.Lock()
_active: Folders | None = None


def active() -> Folders:
    if _active is None:
        raise RuntimeError("no Folders are active: the engine has not been started")
    return _active


def get_filename_list(name: str) -> list[str]:
    return active().filenames(name)


def get_full_path(name: str, filename: str) -> Path | None:
    return active().full_path(name, filename)


def get_directory(kind: str) -> Path:
    return active().directory(kind)


def get_annotated_path(name: str, default: str = "input") -> Path | None:
    return active().annotated_path(name, default)
