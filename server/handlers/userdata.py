"""/users, /settings, /userdata and /v2/userdata: request parsing and ComfyUI's answers; files via UserStore.

Where ComfyUI answers a refusal with plain text (or nothing) the same text is kept, since the frontend reads
the status only; refusals ComfyUI has no answer for (it fails with a 500) get ComfyUI's JSON error body."""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ..errors import bad_request, error_body, read_json, read_json_object
from ..keys import USERS
from ..userdata import AlreadyExists, BadPath, NotFound, OutsideUserFolder, UnknownUser

USER_HEADER = "Comfy-User"

# Per route: the store's refusals -> (status, ComfyUI's plain-text body).
_FILE_ERRORS = {OutsideUserFolder: (403, ""), NotFound: (404, ""), AlreadyExists: (409, "File already exists")}
_LIST_ERRORS = {OutsideUserFolder: (403, "Invalid directory"), NotFound: (404, "Directory not found")}
_TREE_ERRORS = {OutsideUserFolder: (400, "Invalid path requested"), NotFound: (404, "Requested path not found"),
                NotADirectoryError: (400, "Requested path is not a directory")}
_PLAIN = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 409: web.HTTPConflict}


# -- users ---------------------------------------------------------------------------------------------------

async def get_users(request: web.Request) -> web.Response:
    store = request.app[USERS]
    if store.multi_user:
        return web.json_response({"storage": "server", "users": store.users()})
    return web.json_response({"storage": "server", "migrated": await asyncio.to_thread(store.migrated)})


async def post_users(request: web.Request) -> web.Response:
    username = (await read_json_object(request)).get("username")
    if not isinstance(username, str):
        raise bad_request("'username' must be a string.", f"got {username!r}"[:200])
    try:
        user_id = await asyncio.to_thread(request.app[USERS].add_user, username)
    except AlreadyExists:
        return web.json_response({"error": "Duplicate username."}, status=400)
    except ValueError as ex:
        raise bad_request(str(ex))
    return web.json_response(user_id)


def _user(request: web.Request) -> str:
    try:
        return request.app[USERS].user_for(request.headers.get(USER_HEADER))
    except UnknownUser as ex:
        # The frontend answers a 401 with its user-selection / login flow.
        raise web.HTTPUnauthorized(text=json.dumps(error_body("unknown_user", f"Unknown user: {ex}")),
                                   content_type="application/json")


# -- settings ------------------------------------------------------------------------------------------------

async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[USERS].settings, _user(request)))


async def get_setting(request: web.Request) -> web.Response:
    settings = await asyncio.to_thread(request.app[USERS].settings, _user(request))
    return web.json_response(settings.get(request.match_info["id"]))


async def post_settings(request: web.Request) -> web.Response:
    user = _user(request)
    values = await read_json_object(request)
    await asyncio.to_thread(request.app[USERS].update_settings, user, values)
    return web.Response(status=200)


async def post_setting(request: web.Request) -> web.Response:
    user = _user(request)
    value = await read_json(request)
    await asyncio.to_thread(request.app[USERS].set_setting, user, request.match_info["id"], value)
    return web.Response(status=200)


# -- user data -----------------------------------------------------------------------------------------------

async def list_userdata(request: web.Request) -> web.Response:
    directory = request.query.get("dir", "")
    if not directory:
        raise web.HTTPBadRequest(text="Directory not provided")
    listing = await _call(_LIST_ERRORS, request.app[USERS].list_dir, _user(request), directory,
                          recurse=_flag(request, "recurse"), full_info=_flag(request, "full_info"),
                          split=_flag(request, "split"))
    return web.json_response(listing)


async def list_userdata_v2(request: web.Request) -> web.Response:
    try:
        user = request.app[USERS].user_for(request.headers.get(USER_HEADER))
    except UnknownUser:
        raise web.HTTPForbidden(text="Invalid user specified in request")
    return web.json_response(await _call(_TREE_ERRORS, request.app[USERS].list_tree, user,
                                         request.query.get("path", "")))


async def get_userdata_file(request: web.Request) -> web.StreamResponse:
    path = await _call(_FILE_ERRORS, request.app[USERS].existing, _user(request), request.match_info["file"])
    return web.FileResponse(path)


async def post_userdata_file(request: web.Request) -> web.Response:
    store, user = request.app[USERS], _user(request)
    data = await request.read()
    path = await _call(_FILE_ERRORS, store.write, user, request.match_info["file"], data,
                       overwrite=_overwrite(request))
    return web.json_response(await _call(_FILE_ERRORS, store.describe, user, path,
                                         full_info=_flag(request, "full_info")))


async def delete_userdata_file(request: web.Request) -> web.Response:
    await _call(_FILE_ERRORS, request.app[USERS].delete, _user(request), request.match_info["file"])
    return web.Response(status=204)


async def move_userdata_file(request: web.Request) -> web.Response:
    store, user = request.app[USERS], _user(request)
    path = await _call(_FILE_ERRORS, store.move, user, request.match_info["file"], request.match_info["dest"],
                       overwrite=_overwrite(request))
    return web.json_response(await _call(_FILE_ERRORS, store.describe, user, path,
                                         full_info=_flag(request, "full_info")))


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() == "true"


def _overwrite(request: web.Request) -> bool:
    # ComfyUI overwrites unless told exactly "false".
    return request.query.get("overwrite", "true") != "false"


async def _call(errors: dict, fn, *args, **kwargs):
    """Run a blocking store call in a thread; its refusals become this route's answers."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except BadPath as ex:
        raise bad_request(str(ex), type_="invalid_path")
    except tuple(errors) as ex:
        status, text = next(answer for kind, answer in errors.items() if isinstance(ex, kind))
        raise _PLAIN[status](text=text)
    except OSError as ex:
        # What the file system refuses (a folder where a file is named, a file where a folder is) is a bad name.
        raise bad_request("Invalid file name: the file system refused it.",
                          f"{type(ex).__name__}: {ex.strerror or ex}", type_="invalid_path")
