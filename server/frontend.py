"""Where the web frontend, the workflow templates and the node docs are on disk, and which versions they are.

By default the frontend is the installed `comfyui-frontend-package` wheel. ComfyUI's `--front-end-version
owner/repo@version` downloads that release from GitHub; comfyd never downloads anything, so it accepts versions
already on disk, in ComfyUI's own layout: `<base>/web_custom_versions/<owner>_<repo>/<version>/`, holding either
the release's files (index.html at the top) or the wheel installed there with
`pip install --no-deps --target <that folder> comfyui-frontend-package==<version>`.
`--front-end-root PATH` serves any folder that has an index.html.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import re
import urllib.parse
from pathlib import Path

log = logging.getLogger("comfyd.frontend")

FRONTEND_DIST = "comfyui-frontend-package"
TEMPLATES_DIST = "comfyui-workflow-templates"
OFFICIAL_REPO = ("comfy-org", "comfyui_frontend")
# ComfyUI's default `--front-end-version`: it means the installed package.
DEFAULT_VERSION = "comfyanonymous/ComfyUI@latest"
CUSTOM_VERSIONS = "web_custom_versions"
VERSION_SPEC = re.compile(
    r"^([a-zA-Z0-9][a-zA-Z0-9-]{0,38})/([a-zA-Z0-9_.-]+)@(v?\d+\.\d+\.\d+[-._a-zA-Z0-9]*|latest|prerelease)$")


class FrontendError(Exception):
    """A --front-end-* flag that cannot be honoured; the message says what to do instead."""


def parse_version_spec(value: str) -> tuple[str, str, str]:
    """`owner/repo@version` -> (owner, repo, version); argparse's error for anything else."""
    match = VERSION_SPEC.match(value)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid frontend version {value!r}: expected owner/repo@X.Y.Z (or @latest), "
            "e.g. Comfy-Org/ComfyUI_frontend@1.27.10")
    return match.group(1), match.group(2), match.group(3)


def version_spec(value: str) -> str:
    """argparse `type=`: the spec itself, once it parses."""
    parse_version_spec(value)
    return value


def _package_dir(module: str) -> Path | None:
    """An installed package's folder, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _numeric(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _web_root_in(folder: Path) -> Path | None:
    """The web root inside a version folder: the release's files, or the wheel installed with --target."""
    for candidate in (folder, folder / "comfyui_frontend_package" / "static"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def installed_web_root() -> Path | None:
    package = _package_dir("comfyui_frontend_package")
    return _web_root_in(package / "static") if package else None


def installed_template_roots() -> tuple[Path, ...]:
    """The folders /templates serves, first match wins: up to 0.1.x the meta package holds one templates/ folder;
    from 0.3 the templates are split over a JSON package and media bundles that the core package names."""
    modules = ["comfyui_workflow_templates"]
    try:
        from comfyui_workflow_templates_core import loader

        modules += [loader.JSON_PACKAGE, *loader.BUNDLE_PACKAGE_MAP.values()]
    except (ImportError, AttributeError):
        pass
    roots = []
    for module in modules:
        package = _package_dir(module)
        if package is not None and (package / "templates").is_dir():
            roots.append(package / "templates")
    return tuple(roots)


def installed_docs_root() -> Path | None:
    package = _package_dir("comfyui_embedded_docs")
    return package / "docs" if package is not None and (package / "docs").is_dir() else None


def resolve_web_root(base_directory: Path, version: str | None, root: Path | None) -> Path | None:
    """The folder to serve at /, following ComfyUI's flags; None when no frontend is installed."""
    if root is not None:
        root = Path(root).expanduser().resolve()
        if not (root / "index.html").is_file():
            raise FrontendError(f"--front-end-root {root}: there is no index.html in that folder")
        return root
    if version is None or version == DEFAULT_VERSION:
        installed = installed_web_root()
        if installed is None:
            log.warning("%s is not installed: / serves a placeholder page instead of the web app", FRONTEND_DIST)
        return installed
    try:
        owner, repo, wanted = parse_version_spec(version)
    except argparse.ArgumentTypeError as ex:
        raise FrontendError(str(ex)) from None
    folder = Path(base_directory) / CUSTOM_VERSIONS / f"{owner}_{repo}"
    candidates = _versions_on_disk(folder, official=(owner.lower(), repo.lower()) == OFFICIAL_REPO)
    wanted = wanted.lstrip("v")
    if wanted in ("latest", "prerelease") and candidates:
        # Offline, "latest" can only mean the newest version present.
        newest = max(candidates, key=_numeric)
        log.info("frontend %s resolved to %s on disk", version, newest)
        return candidates[newest]
    if wanted in candidates:
        return candidates[wanted]
    example = wanted if wanted[0].isdigit() else "X.Y.Z"
    raise FrontendError(
        f"frontend {version} is not on disk, and comfyd does not download frontends. Put that release in "
        f"{folder / example} (e.g. `pip install --no-deps --target {folder / example} "
        f"{FRONTEND_DIST}=={example}`), or serve a folder with --front-end-root.")


def _versions_on_disk(folder: Path, *, official: bool) -> dict[str, Path]:
    """version -> web root: the version folders under `folder`, and for the official repository the installed
    package as well."""
    found = {}
    if folder.is_dir():
        for entry in folder.iterdir():
            root = _web_root_in(entry) if entry.is_dir() else None
            if root is not None:
                found[entry.name.lstrip("v")] = root
    installed_version, installed = _dist_version(FRONTEND_DIST), installed_web_root()
    if official and installed_version and installed is not None:
        found.setdefault(installed_version, installed)
    return found


class Frontend:
    """The web content comfyd serves besides the API: the app, the workflow templates and the node docs."""

    def __init__(self, web_root: Path | None, template_roots: tuple[Path, ...] = (), docs_root: Path | None = None,
                 versions: dict | None = None):
        self.web_root = web_root
        self.template_roots = tuple(template_roots)
        self.docs_root = docs_root
        self.versions = dict(versions or {})

    @classmethod
    def from_settings(cls, settings) -> "Frontend":
        web_root = resolve_web_root(settings.base_directory, settings.front_end_version, settings.front_end_root)
        if web_root is not None:
            log.info("web root: %s", web_root)
        versions = installed_versions()
        chosen = chosen_version(settings.front_end_version)
        if chosen is not None:  # an older release served on purpose must not be told it is outdated
            versions["required_frontend_version"] = chosen
        return cls(web_root, installed_template_roots(), installed_docs_root(), versions)

    def extension_scripts(self, packages) -> list[str]:
        """GET /extensions: the bundle's own extensions/**/*.js, then each custom node package's web files.
        Blocking (walks folders)."""
        scripts = []
        if self.web_root is not None and (self.web_root / "extensions").is_dir():
            scripts += ["/" + p.relative_to(self.web_root).as_posix()
                        for p in sorted((self.web_root / "extensions").rglob("*.js"))]
        for package in packages:
            if package.web_directory is not None:
                prefix = f"/extensions/{urllib.parse.quote(package.name)}/"
                scripts += [prefix + p.relative_to(package.web_directory).as_posix()
                            for p in sorted(package.web_directory.rglob("*.js"))]
        return scripts


def chosen_version(spec: str | None) -> str | None:
    """The release number --front-end-version names (`...@v1.27.10` -> "1.27.10"); None for the default and
    for latest / prerelease."""
    if spec is None or spec == DEFAULT_VERSION:
        return None
    wanted = parse_version_spec(spec)[2].lstrip("v")
    return wanted if wanted[:1].isdigit() else None


def installed_versions() -> dict:
    """The /system_stats fields the frontend compares (it warns when installed < required). comfyd requires what
    it was installed with, so both sides are the installed packages' versions."""
    versions = {}
    frontend, templates = _dist_version(FRONTEND_DIST), _dist_version(TEMPLATES_DIST)
    if frontend:
        versions["required_frontend_version"] = frontend
    if templates:
        versions["installed_templates_version"] = templates
        versions["required_templates_version"] = templates
    return versions
