"""ComfyUI's `folder_paths` module over comfyd's active Folders."""
from __future__ import annotations

import os
from collections.abc import MutableMapping, MutableSequence
from pathlib import Path

from engine import folders as _folders
from engine.folders import MODEL_EXTENSIONS

supported_pt_extensions = set(MODEL_EXTENSIONS)


def _active():
    return _folders.active()


def get_filename_list(folder_name: str) -> list[str]:
    return _active().filenames(folder_name)


def get_full_path(folder_name: str, filename: str) -> str | None:
    path = _active().full_path(folder_name, filename)
    return str(path) if path is not None else None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


def get_folder_paths(folder_name: str) -> list[str]:
    return [str(p) for p in _active().paths(folder_name)]


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    _active().add_path(folder_name, full_folder_path, first=is_default)


def get_input_directory() -> str:
    return str(_active().input)


def get_output_directory() -> str:
    return str(_active().output)


def get_temp_directory() -> str:
    return str(_active().temp)


def get_user_directory() -> str:
    return str(_active().user)


def get_directory_by_type(type_name: str) -> str | None:
    return str(_active().directory(type_name)) if type_name in ("input", "output", "temp") else None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    path = _active().annotated_path(name)
    if path is None:
        raise ValueError(f"invalid file name: {name!r}")
    return str(path)


def exists_annotated_filepath(name: str) -> bool:
    path = _active().annotated_path(name)
    return path is not None and path.exists()


def get_save_image_path(filename_prefix: str, output_dir: str, image_width=0, image_height=0):
    """(full folder, file name, next counter, subfolder, prefix) for numbered saves, as ComfyUI returns them."""
    from nodes.image import expand_prefix, next_counter

    prefix = expand_prefix(filename_prefix, image_width, image_height)
    normalized = os.path.normpath(prefix)
    subfolder, filename = os.path.dirname(normalized), os.path.basename(normalized)
    folder = _folders.safe_join(Path(output_dir), subfolder or ".")
    if folder is None:
        raise ValueError("Saving image outside the output folder is not allowed.")
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder), filename, next_counter(folder, filename), subfolder, prefix


def __getattr__(name: str):
    # Module attributes that ComfyUI keeps as globals, computed from the active folders.
    if name == "base_path":
        return str(_active().base)
    if name == "models_dir":
        return str(_active().base / "models")
    raise AttributeError(name)


class _RootList(MutableSequence):
    """One folder's roots as strings; edits (append, insert, ...) go to the active folders."""

    def __init__(self, name: str):
        self._name = name

    def _roots(self) -> list[Path]:
        return _active().live_paths(self._name)

    def __getitem__(self, index):
        roots = self._roots()[index]
        return [str(p) for p in roots] if isinstance(index, slice) else str(roots)

    def __setitem__(self, index, value):
        self._roots()[index] = [Path(v) for v in value] if isinstance(index, slice) else Path(value)

    def __delitem__(self, index):
        del self._roots()[index]

    def __len__(self) -> int:
        return len(self._roots())

    def insert(self, index: int, value) -> None:
        self._roots().insert(index, Path(value))

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


class _FolderTable(MutableMapping):
    """ComfyUI's `folder_names_and_paths`: {name: ([roots], {extensions})}, live over the active folders, so a
    pack that adds a folder, a root or an extension (by item assignment or by editing the list or set it got)
    changes what get_filename_list and the loaders see."""

    def __getitem__(self, name: str):
        if name not in _active().names() and name not in _folders.LEGACY_NAMES:
            raise KeyError(name)
        return _RootList(name), _active().extensions(name)

    def __setitem__(self, name: str, value) -> None:
        roots, extensions = value
        _active().set_folder(name, [Path(r) for r in roots], set(extensions))

    def __delitem__(self, name: str) -> None:
        if name not in _active().names():
            raise KeyError(name)
        _active().remove_folder(name)

    def __iter__(self):
        return iter(_active().names())

    def __len__(self) -> int:
        return len(_active().names())


folder_names_and_paths = _FolderTable()
