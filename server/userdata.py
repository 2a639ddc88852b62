"""Per-user files under user/<user>/: the user list, comfy.settings.json, and the files the frontend stores there
(workflows, templates, keybindings). Plain blocking methods; handlers call them through `asyncio.to_thread`.

Every path a request names is resolved by `UserStore.resolve`, which keeps it inside that user's folder."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from engine.folders import safe_join

log = logging.getLogger("comfyd.users")

DEFAULT_USER = "default"
SETTINGS_FILE = "comfy.settings.json"
# Ids ComfyUI generates are a sanitised name plus "_" and a uuid4, and "default": nothing else is needed, and the
# pattern keeps an id a single harmless folder name (no ".", "..", "users.json" or separators).
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_MAX_COMPONENT = 255  # bytes, the usual file-name limit
_MAX_PATH = 4096


class UnknownUser(LookupError):
    pass


class BadPath(ValueError):
    """A name that can never be valid: empty, NUL bytes, too long, or the user folder itself."""


class OutsideUserFolder(PermissionError):
    pass


class NotFound(FileNotFoundError):
    pass


class AlreadyExists(FileExistsError):
    pass


class UserStore:
    def __init__(self, root: Path, *, multi_user: bool):
        self.root = Path(root)
        self.multi_user = multi_user
        self._lock = threading.Lock()  # users.json and settings are read-modify-write
        self._users = self._load_users() if multi_user else {DEFAULT_USER: DEFAULT_USER}

    # -- users ---------------------------------------------------------------------------------------------

    @property
    def users_file(self) -> Path:
        return self.root / "users.json"

    def _load_users(self) -> dict[str, str]:
        if not self.users_file.is_file():
            return {}
        try:
            loaded = json.loads(self.users_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as ex:
            # Starting with no users would let the next POST /users overwrite the file and lose them all.
            raise ValueError(f"{self.users_file} is not a readable JSON object: {ex}") from ex
        if not isinstance(loaded, dict):
            raise ValueError(f"{self.users_file} must hold a JSON object of user id -> name")
        users = {}
        for user_id, name in loaded.items():
            if _USER_ID.fullmatch(user_id) and isinstance(name, str):
                users[user_id] = name
            else:
                log.warning("ignoring user %r in %s: not a valid user id and name", user_id, self.users_file)
        return users

    def users(self) -> dict[str, str]:
        with self._lock:
            return dict(self._users)

    def user_for(self, header: str | None) -> str:
        """The user a request acts as: its Comfy-User header in multi-user mode, otherwise "default"."""
        user = header if self.multi_user and header is not None else DEFAULT_USER
        with self._lock:
            if user not in self._users:
                raise UnknownUser(user)
        return user

    def add_user(self, name: str) -> str:
        """Create a user named `name` (stripped) and return its new id; ValueError for an empty or taken name."""
        name = name.strip()
        if not name:
            raise ValueError("The username is empty.")
        # The readable prefix is capped so that prefix + "_" + uuid stays a valid folder name.
        user_id = f"{re.sub(r'[^a-zA-Z0-9_-]+', '-', name)[:100]}_{uuid.uuid4()}"
        with self._lock:
            if name in self._users.values():
                raise AlreadyExists(name)
            users = {**self._users, user_id: name}
            self.root.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.users_file, json.dumps(users).encode())
            self._users = users
        return user_id

    def migrated(self) -> bool:
        """ComfyUI's single-user "migrated" flag: the default user's folder exists, so the frontend need not copy
        its browser-stored settings to the server."""
        return (self.root / DEFAULT_USER).is_dir()

    # -- settings ------------------------------------------------------------------------------------------

    def settings(self, user: str) -> dict:
        with self._lock:
            return self._read_settings(user)

    def update_settings(self, user: str, values: dict) -> None:
        with self._lock:
            self._write_settings(user, {**self._read_settings(user), **values})

    def set_setting(self, user: str, key: str, value) -> None:
        with self._lock:
            self._write_settings(user, {**self._read_settings(user), key: value})

    def _read_settings(self, user: str) -> dict:
        path = self.user_root(user) / SETTINGS_FILE
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, ValueError) as ex:
            log.error("the settings file %s is unreadable (%s); using empty settings", path, ex)
            return {}
        if not isinstance(settings, dict):
            log.error("the settings file %s does not hold a JSON object; using empty settings", path)
            return {}
        return settings

    def _write_settings(self, user: str, settings: dict) -> None:
        root = self.user_root(user)
        root.mkdir(parents=True, exist_ok=True)
        _write_atomic(root / SETTINGS_FILE, json.dumps(settings, indent=4).encode())

    # -- paths ---------------------------------------------------------------------------------------------

    def user_root(self, user: str) -> Path:
        if not _USER_ID.fullmatch(user):
            raise UnknownUser(user)
        return Path(os.path.abspath(self.root / user))

    def resolve(self, user: str, relative: str, *, allow_root: bool = False) -> Path:
        """`relative` inside the user's folder; BadPath or OutsideUserFolder otherwise (symlinks out included)."""
        if not relative:
            raise BadPath("The path is empty.")
        if "\x00" in relative:
            raise BadPath("The path contains a NUL byte.")
        try:
            encoded = relative.encode("utf-8")
        except UnicodeEncodeError:
            raise BadPath("The path is not valid UTF-8.") from None
        if len(encoded) > _MAX_PATH or any(len(part) > _MAX_COMPONENT for part in encoded.split(b"/")):
            raise BadPath(f"The path is too long (at most {_MAX_COMPONENT} bytes per name, {_MAX_PATH} in all).")
        root = self.user_root(user)
        path = safe_join(root, relative)
        if path is None:
            raise OutsideUserFolder(relative)
        if path == root and not allow_root:
            raise BadPath("The path names the user folder itself, not a file in it.")
        return path

    def describe(self, user: str, path: Path, *, full_info: bool) -> dict | str:
        """What POST and move answer: the path relative to the user's folder, or its full file info."""
        root = self.user_root(user)
        return file_info(path, root) if full_info else path.relative_to(root).as_posix()

    # -- listings ------------------------------------------------------------------------------------------

    def list_dir(self, user: str, directory: str, *, recurse: bool, full_info: bool, split: bool) -> list:
        """GET /userdata: the files (not folders) in `directory`, relative to it; hidden names are skipped as
        ComfyUI's glob skips them. NotFound when the directory does not exist."""
        base = self.resolve(user, directory, allow_root=True)
        if not base.exists():
            raise NotFound(directory)
        files = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recurse else []
            files += [Path(dirpath, f) for f in filenames if not f.startswith(".")]
        real_root = self.user_root(user).resolve()
        files = sorted(p for p in files if p.is_file() and _within(real_root, p))
        if full_info:
            return [file_info(p, base) for p in files]
        relative = [p.relative_to(base).as_posix() for p in files]
        return [[rel, *rel.split("/")] for rel in relative] if split else relative

    def list_tree(self, user: str, relative: str) -> list[dict]:
        """GET /v2/userdata: every folder and file below `relative` (recursively), paths relative to the user's
        folder, folders first, then by name. [] for a user with no folder yet; NotFound, NotADirectoryError."""
        root = self.user_root(user)
        base = self.resolve(user, relative, allow_root=True) if relative else root
        if not base.exists():
            if base == root:
                return []
            raise NotFound(relative)
        if not base.is_dir():
            raise NotADirectoryError(relative)
        real_root, entries = root.resolve(), []
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames:
                path = Path(dirpath, name)
                if _within(real_root, path):
                    entries.append({"name": name, "path": path.relative_to(root).as_posix(), "type": "directory"})
            for name in filenames:
                path = Path(dirpath, name)
                if not _within(real_root, path):
                    continue
                entry = {"name": name, "path": path.relative_to(root).as_posix(), "type": "file"}
                try:
                    stat = path.stat()
                    entry.update(size=stat.st_size, modified=stat.st_mtime)
                except OSError:
                    pass  # a dangling symlink is still listed, without size and time, as ComfyUI does
                entries.append(entry)
        entries.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
        return entries

    # -- files ---------------------------------------------------------------------------------------------

    def existing(self, user: str, relative: str) -> Path:
        """A file (GET) of the user's; NotFound for anything else."""
        path = self.resolve(user, relative)
        if not path.is_file():
            raise NotFound(relative)
        return path

    def write(self, user: str, relative: str, data: bytes, *, overwrite: bool) -> Path:
        path = self.resolve(user, relative)
        if path.is_dir():
            raise IsADirectoryError(relative)
        if not overwrite and path.exists():
            raise AlreadyExists(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def delete(self, user: str, relative: str) -> None:
        path = self.resolve(user, relative)
        if path.is_dir() and not path.is_symlink():
            raise IsADirectoryError(relative)
        if not os.path.lexists(path):
            raise NotFound(relative)
        path.unlink()

    def move(self, user: str, source: str, dest: str, *, overwrite: bool) -> Path:
        """Rename a file or folder; NotFound without a source, AlreadyExists for a taken destination (always
        for a folder: moving into it is not what a rename means)."""
        src = self.resolve(user, source)
        dst = self.resolve(user, dest)
        if not os.path.lexists(src):
            raise NotFound(source)
        if dst.is_dir() or (not overwrite and os.path.lexists(dst)):
            raise AlreadyExists(dest)
        if src.is_dir() and (dst == src or src in dst.parents):
            raise BadPath("A folder cannot be moved into itself.")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dst)
        return dst


def file_info(path: Path, relative_to: Path) -> dict:
    """ComfyUI's `{path, size, modified, created}` of a file; times are float Unix seconds."""
    stat = path.stat()
    return {"path": path.relative_to(relative_to).as_posix(), "size": stat.st_size,
            "modified": stat.st_mtime, "created": stat.st_ctime}


def _within(real_root: Path, path: Path) -> bool:
    """False for a listed entry that is a symlink pointing outside the user's folder."""
    real = path.resolve()
    return real == real_root or real_root in real.parents


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` in one step, so a crash mid-write never leaves half a settings or users file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
