"""Data the suite takes from the package registry, fetched into the virtual environment by `make test`'s install
step (``python -m tests.fetched``), never while the tests run:

- the 0.1.95 release of comfyui-workflow-templates: the SD1/SD2 example templates were dropped from the package
  after the 0.1.x releases (GPL-3 data, so only its template JSONs are unpacked, outside the repository);
- comfyui-frontend-package 1.27.10, the frontend ComfyUI 0.3.64 pins, where ``--front-end-version`` finds it.

A test that needs either and finds it missing fails and says how to fetch it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

PREFIX = Path(sys.prefix)  # the environment the tests run in (.venv)
LEGACY_TEMPLATES_PACKAGE = "comfyui-workflow-templates==0.1.95"
LEGACY_TEMPLATES = PREFIX / "test-data" / "workflow-templates-0.1.95"
PINNED_VERSION = "1.27.10"
PINNED_FRONTEND = PREFIX / "web_custom_versions" / "Comfy-Org_ComfyUI_frontend" / PINNED_VERSION
HOW = "fetched by `make install` (python -m tests.fetched)"


def legacy_templates() -> Path:
    if not any(LEGACY_TEMPLATES.glob("*.json")):
        pytest.fail(f"the {LEGACY_TEMPLATES_PACKAGE} templates are not in {LEGACY_TEMPLATES}: {HOW}")
    return LEGACY_TEMPLATES


def pinned_frontend() -> Path:
    if not (PINNED_FRONTEND / "comfyui_frontend_package" / "static" / "index.html").is_file():
        pytest.fail(f"frontend {PINNED_VERSION} is not in {PINNED_FRONTEND}: {HOW}")
    return PINNED_FRONTEND


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--quiet", *args], check=True)


def fetch_legacy_templates() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pip("download", "--no-deps", "--only-binary=:all:", "--dest", tmp, LEGACY_TEMPLATES_PACKAGE)
        (wheel,) = Path(tmp).glob("*.whl")
        staging = Path(tmp) / "templates"  # moved into place whole: an interrupted unpack leaves nothing behind
        staging.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith("comfyui_workflow_templates/templates/") and member.endswith(".json"):
                    (staging / Path(member).name).write_bytes(archive.read(member))
        shutil.rmtree(LEGACY_TEMPLATES, ignore_errors=True)
        LEGACY_TEMPLATES.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, LEGACY_TEMPLATES)


def fetch_pinned_frontend() -> None:
    shutil.rmtree(PINNED_FRONTEND, ignore_errors=True)
    pip("install", "--no-deps", "--target", str(PINNED_FRONTEND), f"comfyui-frontend-package=={PINNED_VERSION}")


if __name__ == "__main__":
    fetch_legacy_templates()
    fetch_pinned_frontend()
    print(f"fetched {LEGACY_TEMPLATES} and {PINNED_FRONTEND}")
