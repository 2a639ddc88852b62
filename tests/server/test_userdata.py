"""/users, /settings, /userdata, /v2/userdata through HTTP: round trips, upstream's shapes, and path safety."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from yarl import URL

from server.app import create_app
from tests.upstream import capture

USER_ID = re.compile(r"[A-Za-z0-9_-]+_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def user_dir(settings, user: str = "default") -> Path:
    return settings.base_directory / "user" / user


def assert_error_body(body: dict) -> None:
    assert set(body) == {"error", "node_errors"} and set(body["error"]) == {"type", "message", "details",
                                                                            "extra_info"}


async def write(client, name: str, data: bytes = b'{"a": 1}', **params):
    return await raw(client, "POST", f"/userdata/{name}", data=data, params=params)


async def raw(client, method: str, path: str, **kwargs):
    """A request whose path is sent exactly as written: the client would otherwise resolve "." and ".."."""
    url = URL(str(client.make_url("/")).rstrip("/") + path, encoded=True)
    return await client.session.request(method, url, **kwargs)


# -- the captured upstream session, replayed ---------------------------------------------------------------

# In the order upstream's capture session made them; each is compared with what upstream answered.
CAPTURED_SEQUENCE = [
    "GET_settings_default", "POST_settings_Comfy_TestSetting_set_one", "GET_settings_Comfy_TestSetting_after_set",
    "GET_settings_Comfy_Nonexistent_unknown_id", "POST_settings_set_many", "GET_settings_after_set_many",
    "GET_users_default", "GET_userdata_dir_workflows", "POST_userdata_workflows_2Fcap_test_json_write_workflow",
    "GET_userdata_dir_workflows_after_write", "GET_userdata_dir_workflows_full_info", "GET_v2_userdata_v2_listing",
    "GET_userdata_workflows_2Fcap_test_json_read_workflow",
    "POST_userdata_workflows_2Fcap_test_json_write_workflow_no_overwrite", "GET_userdata_2F_2Fetc_2Fpasswd_traversal",
    "GET_userdata_workflows_2Fnope_json_read_missing", "DELETE_userdata_workflows_2Fcap_test_json_delete_workflow",
    "GET_userdata_missing_dir",
]


def same_shape(ours, theirs) -> bool:
    """Equal, except that timestamps (floats) need only be floats."""
    if isinstance(theirs, float):
        return isinstance(ours, float)
    if isinstance(theirs, dict):
        return isinstance(ours, dict) and list(ours) == list(theirs) and all(same_shape(ours[k], theirs[k])
                                                                             for k in theirs)
    if isinstance(theirs, list):
        return isinstance(ours, list) and len(ours) == len(theirs) and all(map(same_shape, ours, theirs))
    return ours == theirs


async def test_replays_upstream_captures(client):
    for name in CAPTURED_SEQUENCE:
        cap = capture(name)
        req = cap["request"]
        kwargs = {"json": req["json"]} if "json" in req else {"data": req.get("data", "").encode()}
        resp = await client.request(req["method"], req["path"], **kwargs)
        raw = await resp.read()
        assert resp.status == cap["status"], name
        if "body_json" in cap:
            assert resp.content_type.startswith("application/json"), name
            assert same_shape(json.loads(raw), cap["body_json"]), (name, raw)
        elif "body_text" in cap:
            assert raw.decode() == cap["body_text"], name
        else:
            assert raw == b"", name


# -- users ---------------------------------------------------------------------------------------------------

async def test_single_user_users_reports_migration_like_upstream(client, settings):
    # Upstream's flag is "the default user's folder exists"; a fresh server lets the frontend copy its settings.
    assert await (await client.get("/users")).json() == {"storage": "server", "migrated": False}
    assert not user_dir(settings).exists(), "a GET must not create the user folder"
    await client.post("/settings/Comfy.A", json=1)
    assert await (await client.get("/api/users")).json() == {"storage": "server", "migrated": True}


async def test_single_user_ignores_the_user_header(client, settings):
    await client.post("/settings/Comfy.A", json=1, headers={"Comfy-User": "someone"})
    resp = await client.get("/settings", headers={"Comfy-User": "other"})
    assert resp.status == 200 and await resp.json() == {"Comfy.A": 1}
    assert (user_dir(settings) / "comfy.settings.json").is_file()


@pytest.fixture
def multi_settings(settings):
    return dataclasses.replace(settings, multi_user=True)


@pytest.fixture
async def multi_client(aiohttp_client, multi_settings, registry):
    return await aiohttp_client(create_app(multi_settings, registry))


async def test_multi_user_create_and_list(multi_client, multi_settings):
    assert await (await multi_client.get("/users")).json() == {"storage": "server", "users": {}}
    resp = await multi_client.post("/users", json={"username": "  Alice Smith! "})
    assert resp.status == 200
    alice = await resp.json()
    assert isinstance(alice, str) and USER_ID.fullmatch(alice) and alice.startswith("Alice-Smith-_")
    bob = await (await multi_client.post("/api/users", json={"username": "bob"})).json()
    expected = {alice: "Alice Smith!", bob: "bob"}
    assert await (await multi_client.get("/users")).json() == {"storage": "server", "users": expected}
    users_file = multi_settings.base_directory / "user" / "users.json"
    assert json.loads(users_file.read_text()) == expected


@pytest.mark.parametrize("body", [{"username": "bob"}, {"username": " bob "}])
async def test_duplicate_username_is_upstreams_400(multi_client, body):
    assert (await multi_client.post("/users", json={"username": "bob"})).status == 200
    resp = await multi_client.post("/users", json=body)
    assert resp.status == 400 and await resp.json() == {"error": "Duplicate username."}


@pytest.mark.parametrize("body", [b"", b"{bad", b"[1]", b"{}", b'{"username": ""}', b'{"username": "   "}',
                                  b'{"username": 5}', b'{"username": null}'])
async def test_bad_new_user_is_a_400(multi_client, multi_settings, body):
    resp = await multi_client.post("/users", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert_error_body(await resp.json())
    assert not (multi_settings.base_directory / "user" / "users.json").exists()


async def test_long_username_gives_a_usable_id(multi_client):
    user = await (await multi_client.post("/users", json={"username": "x" * 1000})).json()
    assert len(user) < 255
    resp = await multi_client.post("/settings/Comfy.A", json=1, headers={"Comfy-User": user})
    assert resp.status == 200


async def test_multi_user_requires_a_known_user(multi_client):
    for headers in ({}, {"Comfy-User": "nobody"}, {"Comfy-User": ""}, {"Comfy-User": ".."}):
        for method, path in [("GET", "/settings"), ("GET", "/settings/x"), ("POST", "/settings"),
                             ("GET", "/userdata?dir=workflows"), ("GET", "/userdata/a.json"),
                             ("POST", "/userdata/a.json"), ("DELETE", "/userdata/a.json"),
                             ("POST", "/userdata/a.json/move/b.json")]:
            resp = await multi_client.request(method, path, json={}, headers=headers)
            assert resp.status == 401, (method, path, headers)
            assert_error_body(await resp.json())
        resp = await multi_client.get("/v2/userdata", headers=headers)
        assert resp.status == 403 and await resp.text() == "Invalid user specified in request"


async def test_users_are_isolated(multi_client, multi_settings):
    alice = await (await multi_client.post("/users", json={"username": "alice"})).json()
    bob = await (await multi_client.post("/users", json={"username": "bob"})).json()
    as_alice, as_bob = {"Comfy-User": alice}, {"Comfy-User": bob}
    await multi_client.post("/settings/Comfy.Theme", json="dark", headers=as_alice)
    await multi_client.post("/userdata/workflows%2Fsecret.json", data=b"alice's", headers=as_alice)

    assert await (await multi_client.get("/settings", headers=as_bob)).json() == {}
    assert await (await multi_client.get("/settings/Comfy.Theme", headers=as_alice)).json() == "dark"
    assert (await multi_client.get("/userdata/workflows%2Fsecret.json", headers=as_bob)).status == 404
    assert await (await multi_client.get("/userdata/workflows%2Fsecret.json", headers=as_alice)).read() == b"alice's"
    for path in [f"/userdata/..%2F{alice}%2Fworkflows%2Fsecret.json", "/userdata/..%2Fusers.json"]:
        assert (await multi_client.get(path, headers=as_bob)).status == 403
        assert (await multi_client.post(path, data=b"x", headers=as_bob)).status == 403
        assert (await multi_client.delete(path, headers=as_bob)).status == 403
    listing = await multi_client.get(f"/userdata?dir=..%2F{alice}", headers=as_bob)
    assert listing.status == 403
    assert (await multi_client.get("/v2/userdata?path=..", headers=as_bob)).status == 400
    assert (multi_settings.base_directory / "user" / alice / "workflows" / "secret.json").read_bytes() == b"alice's"


async def test_unsafe_ids_in_users_json_are_ignored(aiohttp_client, multi_settings, registry):
    root = multi_settings.base_directory / "user"
    root.mkdir(parents=True)
    (root / "users.json").write_text(json.dumps({"..": "up", "a/b": "slash", ".": "dot", "ok_1": "fine",
                                                 "users.json": "file", "bad": 3}))
    client = await aiohttp_client(create_app(multi_settings, registry))
    assert await (await client.get("/users")).json() == {"storage": "server", "users": {"ok_1": "fine"}}
    for user in ("..", ".", "a/b", "users.json"):
        assert (await client.get("/userdata?dir=.", headers={"Comfy-User": user})).status == 401


async def test_malformed_users_json_stops_startup(multi_settings, registry):
    root = multi_settings.base_directory / "user"
    root.mkdir(parents=True)
    (root / "users.json").write_text("{not json")
    with pytest.raises(ValueError, match="users.json"):
        create_app(multi_settings, registry)


# -- settings ------------------------------------------------------------------------------------------------

async def test_settings_round_trip(client, settings):
    assert await (await client.get("/settings")).json() == {}
    assert await (await client.get("/settings/Comfy.Missing")).json() is None
    for key, value in [("Comfy.Str", "hello"), ("Comfy.Null", None), ("Comfy.List", [1, {"a": 2}]),
                       ("Comfy.Float", 1.5), ("Comfy.Bool", False), ("with/slash?", {"x": 1})]:
        path = f"/settings/{key.replace('/', '%2F').replace('?', '%3F')}"
        resp = await client.post(path, data=json.dumps(value), headers={"Content-Type": "application/json"})
        assert resp.status == 200 and await resp.read() == b""
        assert await (await client.get(path)).json() == value
    resp = await client.post("/api/settings", json={"Comfy.Str": "replaced", "Comfy.New": 2})
    assert resp.status == 200 and await resp.read() == b""
    stored = await (await client.get("/settings")).json()
    assert stored["Comfy.Str"] == "replaced" and stored["Comfy.New"] == 2 and stored["Comfy.Float"] == 1.5
    on_disk = (user_dir(settings) / "comfy.settings.json").read_text()
    assert json.loads(on_disk) == stored and on_disk.startswith('{\n    "')  # indented like upstream's file


@pytest.mark.parametrize("path, body", [
    ("/settings", b"{bad"), ("/settings", b"[1, 2]"), ("/settings", b'"text"'), ("/settings", b"null"),
    ("/settings", b""), ("/settings", b"\xff\xfe"), ("/settings/Comfy.A", b"{bad"), ("/settings/Comfy.A", b""),
])
async def test_bad_settings_bodies_are_400s(client, settings, path, body):
    await client.post("/settings/Comfy.Kept", json=1)
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert_error_body(await resp.json())
    assert await (await client.get("/settings")).json() == {"Comfy.Kept": 1}


@pytest.mark.parametrize("content", ["{corrupt", "[1, 2]", "\udcff"])
async def test_corrupt_settings_file_reads_as_empty_and_is_replaced(client, settings, content):
    user_dir(settings).mkdir(parents=True)
    (user_dir(settings) / "comfy.settings.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    assert await (await client.get("/settings")).json() == {}
    assert await (await client.get("/settings/Comfy.A")).json() is None
    assert (await client.post("/settings", json={"Comfy.A": 1})).status == 200
    assert await (await client.get("/settings")).json() == {"Comfy.A": 1}


# -- /userdata listings --------------------------------------------------------------------------------------

async def test_listing(client, settings):
    assert (await client.get("/userdata")).status == 400
    resp = await client.get("/userdata", params={"dir": "workflows"})
    assert resp.status == 404 and await resp.text() == "Directory not found"

    for name in ["workflows/b.json", "workflows/a.json", "workflows/sub/c.json", "workflows/.hidden.json",
                 "workflows/.cache/d.json", "other.json"]:
        assert (await write(client, name.replace("/", "%2F"))).status == 200
    (user_dir(settings) / "workflows" / "emptydir").mkdir()

    async def listing(**params):
        resp = await client.get("/userdata", params={"dir": "workflows", **params})
        assert resp.status == 200
        return await resp.json()

    assert await listing() == ["a.json", "b.json"]
    assert await listing(recurse="true") == ["a.json", "b.json", "sub/c.json"]
    assert await listing(recurse="TRUE", split="true") == [["a.json", "a.json"], ["b.json", "b.json"],
                                                           ["sub/c.json", "sub", "c.json"]]
    full = await listing(recurse="true", split="true", full_info="true")  # full_info wins over split
    assert [f["path"] for f in full] == ["a.json", "b.json", "sub/c.json"]
    for info in full:
        assert list(info) == ["path", "size", "modified", "created"]
        assert info["size"] == 8 and isinstance(info["modified"], float) and isinstance(info["created"], float)
    assert full[0]["modified"] == os.stat(user_dir(settings) / "workflows" / "a.json").st_mtime
    # "dir" may carry a trailing slash (the frontend asks for "subgraphs/") and name the user folder itself.
    assert await (await client.get("/userdata", params={"dir": "workflows/sub/"})).json() == ["c.json"]
    assert await (await client.get("/api/userdata", params={"dir": "."})).json() == ["other.json"]
    # A file named as a directory lists nothing, as upstream's glob does.
    assert await (await client.get("/userdata", params={"dir": "other.json"})).json() == []


@pytest.mark.parametrize("directory", ["..", "../..", "/etc", "workflows/../../user"])
async def test_listing_outside_the_user_folder_is_403(client, directory):
    resp = await client.get("/userdata", params={"dir": directory})
    assert resp.status == 403 and await resp.text() == "Invalid directory"


@pytest.mark.parametrize("directory", ["a\x00b", "x" * 300])
async def test_listing_bad_names_is_400(client, directory):
    resp = await client.get("/userdata", params={"dir": directory})
    assert resp.status == 400
    assert_error_body(await resp.json())


async def test_v2_listing(client, settings):
    assert await (await client.get("/v2/userdata")).json() == []  # no user folder yet
    resp = await client.get("/v2/userdata", params={"path": "workflows"})
    assert resp.status == 404 and await resp.text() == "Requested path not found"
    for name in ["workflows/b.json", "workflows/A.json", "workflows/zdir/c.json", "workflows/.hidden"]:
        await write(client, name.replace("/", "%2F"), b"12345")
    (user_dir(settings) / "workflows" / "Bdir").mkdir()

    entries = await (await client.get("/api/v2/userdata", params={"path": "workflows"})).json()
    assert [(e["type"], e["path"]) for e in entries] == [
        ("directory", "workflows/Bdir"), ("directory", "workflows/zdir"), ("file", "workflows/.hidden"),
        ("file", "workflows/A.json"), ("file", "workflows/b.json"), ("file", "workflows/zdir/c.json")]
    assert list(entries[0]) == ["name", "path", "type"] and entries[0]["name"] == "Bdir"
    file_entry = entries[3]
    assert list(file_entry) == ["name", "path", "type", "size", "modified"]
    assert file_entry["name"] == "A.json" and file_entry["size"] == 5 and isinstance(file_entry["modified"], float)

    root = await (await client.get("/v2/userdata")).json()  # sorted by name alone, whatever the depth
    assert [e["name"] for e in root[:3]] == ["Bdir", "workflows", "zdir"]
    assert root[1] == {"name": "workflows", "path": "workflows", "type": "directory"}
    resp = await client.get("/v2/userdata", params={"path": "workflows/b.json"})
    assert resp.status == 400 and await resp.text() == "Requested path is not a directory"
    for outside in ["..", "/etc", "workflows/../../.."]:
        resp = await client.get("/v2/userdata", params={"path": outside})
        assert resp.status == 400 and await resp.text() == "Invalid path requested"
    assert (await client.get("/v2/userdata", params={"path": "a\x00"})).status == 400


# -- /userdata/{file} ----------------------------------------------------------------------------------------

async def test_file_round_trip(client, settings):
    resp = await write(client, "workflows%2Fdeep%2Fflow.json", b'{"nodes": []}')
    assert resp.status == 200 and await resp.json() == "workflows/deep/flow.json"
    on_disk = user_dir(settings) / "workflows" / "deep" / "flow.json"
    assert on_disk.read_bytes() == b'{"nodes": []}'

    resp = await client.get("/userdata/workflows%2Fdeep%2Fflow.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.read() == b'{"nodes": []}'

    resp = await write(client, "workflows%2Fdeep%2Fflow.json", b"second", overwrite="false")
    assert resp.status == 409 and await resp.text() == "File already exists"
    assert on_disk.read_bytes() == b'{"nodes": []}'
    for overwrite in ({}, {"overwrite": "true"}, {"overwrite": "False"}):  # only exactly "false" refuses
        assert (await write(client, "workflows%2Fdeep%2Fflow.json", b"second", **overwrite)).status == 200
    assert on_disk.read_bytes() == b"second"

    resp = await write(client, "user.css", b"body{}", full_info="true")
    info = await resp.json()
    assert list(info) == ["path", "size", "modified", "created"]
    assert info["path"] == "user.css" and info["size"] == 6 and isinstance(info["modified"], float)

    resp = await client.delete("/api/userdata/workflows%2Fdeep%2Fflow.json")
    assert resp.status == 204 and await resp.read() == b""
    assert not on_disk.exists()
    assert (await client.get("/userdata/workflows%2Fdeep%2Fflow.json")).status == 404
    assert (await client.delete("/userdata/workflows%2Fdeep%2Fflow.json")).status == 404


async def test_binary_and_empty_bodies_are_stored_verbatim(client, settings):
    data = bytes(range(256)) * 100
    assert (await write(client, "blob.bin", data)).status == 200
    assert await (await client.get("/userdata/blob.bin")).read() == data
    assert (await write(client, "empty.json", b"")).status == 200
    assert (user_dir(settings) / "empty.json").read_bytes() == b""


async def test_percent_in_a_name_is_decoded_once(client, settings):
    # The frontend encodes names once (encodeURIComponent); a literal "%41" in a name stays as it is.
    assert await (await write(client, "100%25%20a%2541.json")).json() == "100% a%41.json"
    assert (user_dir(settings) / "100% a%41.json").is_file()


async def test_folders_are_not_files(client, settings):
    await write(client, "workflows%2Fa.json")
    assert (await client.get("/userdata/workflows")).status == 404
    resp = await client.delete("/userdata/workflows")
    assert resp.status == 400
    assert_error_body(await resp.json())
    assert (await write(client, "workflows")).status == 400
    # A file where a folder is needed.
    assert (await write(client, "workflows%2Fa.json%2Fb.json")).status == 400
    assert (user_dir(settings) / "workflows" / "a.json").is_file()


async def test_upload_size_is_limited(aiohttp_client, settings, registry):
    small = dataclasses.replace(settings, max_upload_size_mb=0.01)
    client = await aiohttp_client(create_app(small, registry))
    assert (await write(client, "big.bin", b"x" * 20000)).status == 413
    assert not (user_dir(settings) / "big.bin").exists()


# -- move ----------------------------------------------------------------------------------------------------

async def test_move(client, settings):
    await write(client, "workflows%2Fa.json", b"A")
    await write(client, "workflows%2Fb.json", b"B")
    root = user_dir(settings) / "workflows"

    resp = await client.post("/userdata/workflows%2Fa.json/move/workflows%2Fnew%2Fc.json")
    assert resp.status == 200 and await resp.json() == "workflows/new/c.json"
    assert not (root / "a.json").exists() and (root / "new" / "c.json").read_bytes() == b"A"

    resp = await client.post("/userdata/workflows%2Fnew%2Fc.json/move/workflows%2Fb.json?overwrite=false")
    assert resp.status == 409 and await resp.text() == "File already exists"
    assert (root / "b.json").read_bytes() == b"B"

    resp = await client.post("/api/userdata/workflows%2Fnew%2Fc.json/move/workflows%2Fb.json?full_info=true")
    info = await resp.json()
    assert resp.status == 200 and info["path"] == "workflows/b.json" and info["size"] == 1
    assert list(info) == ["path", "size", "modified", "created"]
    assert (root / "b.json").read_bytes() == b"A" and not (root / "new" / "c.json").exists()

    assert (await client.post("/userdata/workflows%2Fgone.json/move/workflows%2Fx.json")).status == 404
    # Moving onto a folder would put the file inside it: refused even with overwrite.
    assert (await client.post("/userdata/workflows%2Fb.json/move/workflows%2Fnew")).status == 409
    assert (await client.post("/userdata/workflows/move/workflows%2Fnew%2Finner")).status == 400
    assert (await client.post("/userdata/workflows%2Fb.json/move/..%2F..%2Fstolen.json")).status == 403
    assert (await client.post("/userdata/..%2Fusers.json/move/mine.json")).status == 403
    assert (root / "b.json").read_bytes() == b"A"
    assert not (settings.base_directory / "stolen.json").exists()


# -- path safety ---------------------------------------------------------------------------------------------

OUTSIDE = ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..%2Fdefault2%2Fx.json", "workflows%2F..%2F..%2Fx.json",
           "..", "..%2F"]
BAD_NAMES = ["a%00b.json", "x" * 256, "workflows%2F" + "y" * 300 + ".json", ".", "workflows%2F..", "%2E"]


@pytest.mark.parametrize("name", OUTSIDE)
async def test_paths_outside_the_user_folder_are_403(client, settings, name):
    (settings.base_directory / "user" / "default").mkdir(parents=True, exist_ok=True)
    for resp in [await raw(client, "GET", f"/userdata/{name}"), await write(client, name),
                 await raw(client, "DELETE", f"/userdata/{name}"),
                 await raw(client, "POST", f"/userdata/{name}/move/x.json")]:
        assert resp.status == 403, name
    assert sorted(p.name for p in (settings.base_directory / "user").iterdir()) == ["default"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_invalid_names_are_400(client, settings, name):
    await write(client, "x.json")
    for resp in [await raw(client, "GET", f"/userdata/{name}"), await write(client, name),
                 await raw(client, "DELETE", f"/userdata/{name}"),
                 await raw(client, "POST", f"/userdata/{name}/move/y.json"),
                 await raw(client, "POST", f"/userdata/x.json/move/{name}")]:
        assert resp.status == 400, name
        assert_error_body(await resp.json())


async def test_symlinks_out_of_the_user_folder_are_refused(client, settings, tmp_path):
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "key.txt").write_text("s3cret")
    home = user_dir(settings)
    (home / "workflows").mkdir(parents=True)
    (home / "workflows" / "real.json").write_text("{}")
    (home / "out").symlink_to(secret_dir)
    (home / "workflows" / "key.json").symlink_to(secret_dir / "key.txt")
    (home / "workflows" / "inside.json").symlink_to(home / "workflows" / "real.json")

    assert (await client.get("/userdata/out%2Fkey.txt")).status == 403
    assert (await client.get("/userdata/workflows%2Fkey.json")).status == 403
    assert (await write(client, "out%2Fnew.txt")).status == 403
    assert (await write(client, "workflows%2Fkey.json", b"overwritten")).status == 403
    assert (await client.delete("/userdata/workflows%2Fkey.json")).status == 403
    assert (await client.get("/userdata", params={"dir": "out"})).status == 403
    assert (await client.get("/v2/userdata", params={"path": "out"})).status == 400
    assert await (await client.get("/userdata", params={"dir": "workflows"})).json() == ["inside.json", "real.json"]
    tree = await (await client.get("/v2/userdata")).json()
    assert {e["path"] for e in tree} == {"workflows", "workflows/inside.json", "workflows/real.json"}
    # A symlink that stays inside works like the file it names.
    assert await (await client.get("/userdata/workflows%2Finside.json")).read() == b"{}"
    assert (secret_dir / "key.txt").read_text() == "s3cret" and sorted(os.listdir(secret_dir)) == ["key.txt"]
