"""The input/output/temp media behind the file routes: uploads with ComfyUI's naming and dedup, mask composition,
the files /view serves with their preview and channel renderings, and the metadata of safetensors model files.

Every method blocks on disk or image work; handlers run them through `asyncio.to_thread`. Names from clients are
checked here and every path goes through `safe_join`, so nothing outside the three folders (or the model
folders) is read or written.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import mimetypes
import os
import struct
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.folders import Folders, safe_join

KINDS = ("input", "output", "temp")
MAX_NAME_BYTES = 255  # one path component, as most filesystems allow
MAX_PATH_BYTES = 1024  # a whole relative path, well under PATH_MAX once joined to a root
# Headers of big checkpoints and of LoRAs with training metadata pass 1 MiB (upstream's limit); this bounds memory.
MAX_SAFETENSORS_HEADER = 16 * 1024 * 1024
# /view serves these media types as they are; anything else (HTML, scripts, SVG, XML, PDF) as a download.
INLINE_PREFIXES = ("image/", "audio/", "video/", "model/")
INLINE_TYPES = frozenset({"text/plain", "application/json"})
SCRIPTABLE_TYPES = frozenset({"image/svg+xml"})


class MediaError(Exception):
    """A request the store refuses: the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, details: str = ""):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


@dataclasses.dataclass(frozen=True)
class FileRef:
    """A file as ComfyUI's API names it: folder kind, subfolder and file name."""
    kind: str
    subfolder: str
    filename: str


class MediaStore:
    def __init__(self, folders: Folders):
        self._folders = folders

    def root(self, kind: str) -> Path:
        if kind not in KINDS:
            raise MediaError(400, f"Unknown type {kind!r}; expected one of: {', '.join(KINDS)}.")
        return self._folders.directory(kind)

    # -- uploads -------------------------------------------------------------------------------------------

    def save_upload(self, data: bytes, target: FileRef, *, overwrite: bool, images_only: bool = False) -> str:
        """Store an uploaded file as it came; returns the name it got. Like upstream, any file is taken (packs
        and the frontend upload video, audio, 3D models and more through /upload/image) unless `images_only`;
        one named as a raster image must be one, so image nodes never meet a damaged file. /view serves only
        passive media inline."""
        guessed = mimetypes.guess_type(target.filename)[0] or ""
        if images_only or (guessed.startswith("image/") and guessed not in SCRIPTABLE_TYPES):
            check_image(data, "The uploaded file")
        return self._store(data, data, target, overwrite)

    def save_mask(self, mask: bytes, target: FileRef, original: FileRef, *, overwrite: bool) -> str:
        """Store `original` with the uploaded mask's alpha as its alpha channel, as PNG; returns the name."""
        return self._store(mask, compose_mask(self.locate(original), mask), target, overwrite)

    def _store(self, upload: bytes, content: bytes, target: FileRef, overwrite: bool) -> str:
        check_name(target.filename, "filename")
        folder = self._inside(self.root(target.kind), target.subfolder, "subfolder", escape_status=400)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise MediaError(400, f"The subfolder {target.subfolder!r} names a file, not a folder.")
        stem, ext = os.path.splitext(target.filename)
        name, number = target.filename, 0
        while True:
            path = self._inside(folder, name, "filename", escape_status=400)
            try:
                # Exclusive creation, so two uploads racing for one name cannot overwrite each other.
                with open(path, "wb" if overwrite else "xb") as f:
                    f.write(content)
                return name
            except IsADirectoryError:
                raise MediaError(400, f"{name!r} is a folder in the {target.kind} directory.")
            except FileExistsError:
                # Like upstream, dedup compares with the uploaded bytes: a mask, stored composed, gets a new name.
                if _same_bytes(path, upload):
                    return name
            number += 1
            name = f"{stem} ({number}){ext}"
            check_name(name, "filename")

    # -- existing files ------------------------------------------------------------------------------------

    def locate(self, ref: FileRef) -> Path:
        """The existing file `ref` names (its filename may carry a ` [input]`-style folder annotation)."""
        filename, annotated = split_annotation(ref.filename)
        check_inner(filename, "filename")
        kind = annotated or ref.kind
        folder = self._inside(self.root(kind), ref.subfolder, "subfolder", escape_status=403)
        path = self._inside(folder, filename, "filename", escape_status=403)
        if not path.is_file():
            where = "/".join(part for part in (kind, ref.subfolder) if part)
            raise MediaError(404, f"There is no file {filename!r} in {where}.")
        return path

    def newest_first(self, kind: str) -> list[str]:
        """The names of the regular files at the top of the input/output/temp folder, newest first. Symlinks are
        left out: they may point outside the folder."""
        with os.scandir(self.root(kind)) as entries:
            files = [(e.stat(follow_symlinks=False).st_mtime, e.name) for e in entries
                     if e.is_file(follow_symlinks=False)]
        return [name for _, name in sorted(files, key=lambda f: -f[0])]

    def model_metadata(self, folder_name: str, filename: str) -> dict:
        """The `__metadata__` of a safetensors file in a model folder."""
        check_inner(filename, "filename")
        path = self._folders.full_path(folder_name, filename) if filename.endswith(".safetensors") else None
        if path is None:
            raise MediaError(404, f"No safetensors file {filename!r} in the model folder {folder_name!r}.")
        metadata = read_safetensors_metadata(path)
        if metadata is None:
            raise MediaError(404, f"{filename!r} has no readable safetensors metadata.")
        return metadata

    def model_preview(self, folder_name: str, path_index: str, filename: str) -> bytes:
        """WEBP of the preview image of a model file (the model library's thumbnails): an image beside it named
        like the model (``name.png``, ``name.preview.jpg``, ...), else the first ``ssmd_cover_images`` entry of
        its safetensors metadata. ``filename`` is the model's name with any extension (the frontend asks for
        ``name.webp``)."""
        if folder_name not in self._folders.names():
            raise MediaError(404, f"There is no model folder {folder_name!r}.")
        roots = self._folders.paths(folder_name)
        if not path_index.isdigit() or int(path_index) >= len(roots):
            raise MediaError(404, f"The model folder {folder_name!r} has no path number {path_index}.")
        check_inner(filename, "filename")
        model = self._inside(roots[int(path_index)], filename, "filename", escape_status=403)
        image = _preview_image(model.with_suffix(""))
        if image is None:
            raise MediaError(404, f"There is no preview image for {filename!r} in {folder_name}.")
        with image:
            return _encode(image, "WEBP")

    @staticmethod
    def _inside(root: Path, relative: str, what: str, *, escape_status: int) -> Path:
        check_relative(relative, what)
        path = safe_join(root, relative)
        if path is None:
            raise MediaError(escape_status, f"The {what} {relative!r} leads outside its folder.")
        return path


# -- names ---------------------------------------------------------------------------------------------------

def check_relative(path: str, what: str) -> None:
    """A relative path a client sent: printable, and short enough for the filesystem. Confinement is safe_join's."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise MediaError(400, f"The {what} contains control characters (NUL, newline...).")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise MediaError(400, f"The {what} is longer than {MAX_PATH_BYTES} bytes.")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in path.split("/")):
        raise MediaError(400, f"A part of the {what} is longer than {MAX_NAME_BYTES} bytes.")


def check_inner(path: str, what: str) -> None:
    """A non-empty relative path that stays inside its folder by its spelling alone."""
    if not path:
        raise MediaError(400, f"The {what} is empty.")
    check_relative(path, what)
    if path.startswith(("/", "\\")) or ".." in path.split("/"):
        raise MediaError(400, f"The {what} {path!r} must name a file inside the folder, without '..'.")


def check_name(name: str, what: str) -> None:
    """A plain file name: one non-empty component."""
    check_inner(name, what)
    if "/" in name or "\\" in name or name == ".":
        raise MediaError(400, f"The {what} {name!r} must be a plain file name, without folders.")


def split_annotation(filename: str) -> tuple[str, str | None]:
    """ComfyUI's `name.png [output]` form: (name, folder kind), or (filename, None) without an annotation."""
    for kind in KINDS:
        if filename.endswith(f"[{kind}]"):
            return filename[:-len(kind) - 2].rstrip(" "), kind
    return filename, None


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


# -- images --------------------------------------------------------------------------------------------------

# What Pillow raises for data that is not an image, is damaged, or is a decompression bomb.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


@contextlib.contextmanager
def _decoding(what: str):
    try:
        yield
    except DECODE_ERRORS as ex:
        raise MediaError(400, f"{what} is not an image Pillow can read.", f"{type(ex).__name__}: {ex}")


def check_image(data: bytes, what: str) -> None:
    with _decoding(what), Image.open(io.BytesIO(data)) as image:
        image.verify()


def compose_mask(original_path: Path, mask: bytes) -> bytes:
    """The original's colours with the mask's alpha, as PNG keeping the original's PNG text chunks."""
    with _decoding("The original image"), Image.open(original_path) as original:
        info = PngInfo()
        for key, value in getattr(original, "text", {}).items():
            info.add_text(key, value)
        composed = original.convert("RGBA")
    with _decoding("The uploaded mask"), Image.open(io.BytesIO(mask)) as mask_image:
        alpha = mask_image.convert("RGBA").getchannel("A")
    if alpha.size != composed.size:
        raise MediaError(400, "The mask and the original image differ in size.",
                         f"mask {alpha.size[0]}x{alpha.size[1]}, original {composed.size[0]}x{composed.size[1]}")
    composed.putalpha(alpha)
    return _encode(composed, "png", compress_level=4, pnginfo=info)


def render(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    """/view's re-encodings: `preview=webp;90` / `jpeg;Q`, or `channel=rgb` / `a` as PNG. (bytes, content type)"""
    with _decoding(repr(path.name)), Image.open(path) as image:
        if preview is not None:
            parts = preview.split(";")
            fmt = parts[0] if parts[0] in ("webp", "jpeg") and "a" not in channel else "webp"
            quality = min(int(parts[-1]), 100) if parts[-1].isascii() and parts[-1].isdigit() else 90
            out = image.convert("RGB") if fmt == "jpeg" or channel == "rgb" else image
            return _encode(out, fmt, quality=quality), f"image/{fmt}"
        if channel == "rgb":
            return _encode(image.convert("RGB"), "png"), "image/png"
        # The alpha as a black image carrying it, so a browser shows the mask over its background.
        alpha_image = Image.new("RGBA", image.size)
        alpha_image.putalpha(image.convert("RGBA").getchannel("A"))
        return _encode(alpha_image, "png"), "image/png"


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def inline_content_type(filename: str) -> str:
    """The Content-Type /view serves a file with: its own for passive media, a download type for the rest."""
    guessed = mimetypes.guess_type(filename)[0]
    if guessed and guessed not in SCRIPTABLE_TYPES and (guessed in INLINE_TYPES or guessed.startswith(INLINE_PREFIXES)):
        return guessed
    return "application/octet-stream"


# -- model files ---------------------------------------------------------------------------------------------

PREVIEW_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def _preview_image(stem: Path) -> Image.Image | None:
    """The first readable preview of the model files named ``stem.*``: ``stem.<image>`` or
    ``stem.preview.<image>``, then the cover images embedded in ``stem.safetensors``."""
    if not stem.parent.is_dir():
        return None
    for base in (stem, stem.with_name(stem.name + ".preview")):
        for suffix in PREVIEW_SUFFIXES:
            candidate = base.with_name(base.name + suffix)
            if candidate.is_file() and not candidate.is_symlink():
                with contextlib.suppress(OSError, Image.DecompressionBombError):
                    return Image.open(candidate)
    weights = stem.with_name(stem.name + ".safetensors")
    metadata = read_safetensors_metadata(weights) if weights.is_file() else None
    with contextlib.suppress(TypeError, ValueError, OSError, Image.DecompressionBombError):
        for cover in json.loads((metadata or {}).get("ssmd_cover_images") or "[]"):
            return Image.open(io.BytesIO(base64.b64decode(cover)))
    return None


def read_safetensors_metadata(path: Path) -> dict | None:
    """`__metadata__` from a safetensors header (8-byte little-endian length, then JSON); None when absent."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            return None
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_SAFETENSORS_HEADER:
            return None
        header = f.read(length)
    try:
        parsed = json.loads(header)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(parsed, dict) or "__metadata__" not in parsed:
        return None
    return parsed["__metadata__"]
