"""Read-only descriptions of the server: nodes, models, embeddings, extensions, system stats, features."""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from ..compat import extension_web_dirs
from ..keys import ENGINE, FRONTEND, SETTINGS


async def get_object_info(request: web.Request) -> web.Response:
    # Combo lists read model folders from disk; do that off the event loop.
    info = await asyncio.to_thread(request.app[ENGINE].registry.all_info)
    return web.json_response(info)


async def get_object_info_node(request: web.Request) -> web.Response:
    registry = request.app[ENGINE].registry
    name = request.match_info["node_class"]
    if name not in registry:
        return web.json_response({})
    return web.json_response({name: await asyncio.to_thread(registry.info, name)})


async def get_embeddings(request: web.Request) -> web.Response:
    names = request.app[ENGINE].folders.filenames("embeddings")
    return web.json_response([str(Path(n).with_suffix("")) for n in names])


async def get_model_types(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].folders.names())


async def get_models(request: web.Request) -> web.Response:
    folders = request.app[ENGINE].folders
    folder = request.match_info["folder"]
    if folder not in folders.names():
        return web.Response(status=404)
    return web.json_response(await asyncio.to_thread(folders.filenames, folder))


async def get_experiment_models(request: web.Request) -> web.Response:
    folders = request.app[ENGINE].folders
    return web.json_response([{"name": name, "folders": [str(p) for p in folders.paths(name)]}
                              for name in folders.names() if name != "custom_nodes"])


async def get_experiment_models_folder(request: web.Request) -> web.Response:
    folders = request.app[ENGINE].folders
    folder = request.match_info["folder"]
    if folder not in folders.names():
        return web.Response(status=404, text=f"Unknown folder {folder}")
    return web.json_response(await asyncio.to_thread(folders.indexed_filenames, folder))


async def get_system_stats(request: web.Request) -> web.Response:
    stats = await asyncio.to_thread(request.app[ENGINE].system_stats)
    stats["system"].update(request.app[FRONTEND].versions)
    return web.json_response(stats)


def server_features(settings) -> dict:
    return {"supports_preview_metadata": True, "max_upload_size": settings.max_upload_size}


async def get_features(request: web.Request) -> web.Response:
    return web.json_response(server_features(request.app[SETTINGS]))


async def get_extensions(request: web.Request) -> web.Response:
    packages = extension_web_dirs(request.app[ENGINE].registry.packages)
    return web.json_response(await asyncio.to_thread(request.app[FRONTEND].extension_scripts, packages))


async def get_i18n(request: web.Request) -> web.Response:
    return web.json_response({})


async def get_workflow_templates(request: web.Request) -> web.Response:
    return web.json_response({})


async def get_global_subgraphs(request: web.Request) -> web.Response:
    return web.json_response({})
