"""Uploads (/upload/image, /upload/mask), /view and /view_metadata: real files written and decoded, ComfyUI's
naming rules, the upstream captures replayed, and every way out of a folder refused with nothing written."""
from __future__ import annotations

import io
import json
import random
import struct
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine import Settings
from server.app import create_app
from tests.upstream import CAPTURES, capture

BOUNDARY = "comfyd-test-boundary"
SECRET = "the contents of a file next to the folders"


# -- helpers -------------------------------------------------------------------------------------------------

def png(size=(8, 6), color=(10, 20, 30), mode="RGB", text: dict | None = None) -> bytes:
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def noise(size=(32, 32), seed=0, mode="RGB") -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * len(mode)))


def encode(image: Image.Image, fmt="PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def multipart(fields: dict[str, str] | None = None, files: dict[str, tuple[str, bytes]] | None = None):
    """A multipart body written by hand, so file names reach the server exactly as given (NUL, '..', '/')."""
    chunks = []
    for name, value in (fields or {}).items():
        chunks.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                      + value.encode() + b"\r\n")
    for name, (filename, data) in (files or {}).items():
        quoted = urllib.parse.quote(filename, safe="")
        chunks.append(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename*=utf-8''{quoted}"
                      f"\r\nContent-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()
    return {"data": body, "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}}


async def upload(client, filename: str, data: bytes, path="/upload/image", **fields):
    resp = await client.post(path, **multipart(fields, {"image": (filename, data)}))
    body = await resp.json() if resp.content_type == "application/json" else await resp.read()
    return resp.status, body


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def dirs(tmp_path):
    return {kind: tmp_path / kind for kind in ("input", "output", "temp")}


# -- uploads -------------------------------------------------------------------------------------------------

async def test_upload_then_view_round_trip(client, dirs):
    data = png(color=(200, 100, 50))
    status, body = await upload(client, "photo.png", data)
    assert status == 200 and body == {"name": "photo.png", "subfolder": "", "type": "input"}
    assert (dirs["input"] / "photo.png").read_bytes() == data

    resp = await client.get("/view", params={"filename": "photo.png", "type": "input"})
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Disposition"] == 'filename="photo.png"'
    assert all(h in resp.headers for h in ("ETag", "Last-Modified", "Accept-Ranges"))
    assert decode(data).getpixel((3, 3)) == (200, 100, 50)

    again = await client.get("/view", params={"filename": "photo.png", "type": "input"},
                             headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_upload_naming_replays_the_captures(client, dirs):
    """The capture sequence: new, same bytes, other bytes twice, overwrite, subfolder, output, temp, /api."""
    first, second, third = png(color=(1, 1, 1)), png(color=(2, 2, 2)), png(color=(3, 3, 3))
    name = "cap_upload_6fb894.png"
    steps = [
        ("POST_upload_image_new_file", first, {}),
        ("POST_upload_image_same_name_same_bytes", first, {}),
        ("POST_upload_image_same_name_different_bytes", second, {}),
        ("POST_upload_image_same_name_different_bytes_again", third, {}),
        ("POST_upload_image_overwrite_true", third, {"overwrite": "true"}),
        ("POST_upload_image_subfolder", first, {"subfolder": "capsub"}),
        ("POST_upload_image_type_output", first, {"type": "output"}),
        ("POST_upload_image_type_temp", first, {"type": "temp"}),
    ]
    for capture_name, data, fields in steps:
        expected = capture(capture_name)
        status, body = await upload(client, name, data, **fields)
        assert (status, body) == (expected["status"], expected["body_json"]), capture_name
    expected = capture("POST_api_upload_image_api_prefix")
    status, body = await upload(client, "cap_api_cap_upload_6fb894.png", first, path="/api/upload/image")
    assert (status, body) == (expected["status"], expected["body_json"])

    assert (dirs["input"] / name).read_bytes() == third  # overwritten
    assert (dirs["input"] / "cap_upload_6fb894 (1).png").read_bytes() == second
    assert (dirs["input"] / "cap_upload_6fb894 (2).png").read_bytes() == third
    for where in (dirs["input"] / "capsub", dirs["output"], dirs["temp"]):
        assert (where / name).read_bytes() == first


async def test_dedup_finds_a_numbered_copy_and_overwrite_accepts_1(client, dirs):
    a, b, c = png(color=(9, 0, 0)), png(color=(0, 9, 0)), png(color=(0, 0, 9))
    assert (await upload(client, "x.png", a))[1]["name"] == "x.png"
    assert (await upload(client, "x.png", b))[1]["name"] == "x (1).png"
    assert (await upload(client, "x.png", b))[1]["name"] == "x (1).png"  # same bytes as the copy
    assert (await upload(client, "x.png", c, overwrite="1"))[1]["name"] == "x.png"
    assert (dirs["input"] / "x.png").read_bytes() == c
    assert (await upload(client, "x.png", a, overwrite="yes"))[1]["name"] == "x (2).png"  # only "true" / "1"
    assert sorted(p.name for p in dirs["input"].iterdir()) == ["x (1).png", "x (2).png", "x.png"]


async def test_upload_into_nested_subfolder_and_view_it(client, dirs):
    data = png(color=(5, 6, 7))
    status, body = await upload(client, "deep.png", data, subfolder="a/b", type="output")
    assert status == 200 and body == {"name": "deep.png", "subfolder": "a/b", "type": "output"}
    assert (dirs["output"] / "a" / "b" / "deep.png").read_bytes() == data
    resp = await client.get("/api/view", params={"filename": "deep.png", "subfolder": "a/b"})
    assert resp.status == 200 and await resp.read() == data


async def test_upload_accepts_other_image_formats_and_stores_the_bytes(client, dirs):
    data = encode(noise(), "JPEG", quality=80)
    status, body = await upload(client, "photo.jpg", data)
    assert status == 200 and (dirs["input"] / "photo.jpg").read_bytes() == data


async def test_upload_takes_other_media_and_view_never_serves_active_content(client, dirs):
    clip, page = b"\x00\x00\x00\x18ftypmp42 not really a video", b"<html><script>alert(1)</script></html>"
    for name, data, served_as in [("clip.mp4", clip, "video/mp4"), ("sound.wav", b"RIFF....WAVE", "audio/x-wav"),
                                  ("page.html", page, "application/octet-stream"),
                                  ("drawing.svg", b"<svg onload='alert(1)'/>", "application/octet-stream")]:
        status, body = await upload(client, name, data)
        assert status == 200 and body == {"name": name, "subfolder": "", "type": "input"}
        assert (dirs["input"] / name).read_bytes() == data
        resp = await client.get("/view", params={"filename": name, "type": "input"})
        assert resp.status == 200 and await resp.read() == data
        assert resp.headers["Content-Type"] == served_as and resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("payload, message", [
    (b"this is not an image", "not an image"),
    (png()[:40], "not an image"),  # truncated PNG
    (b"<html><script>alert(1)</script></html>", "not an image"),
])
async def test_upload_of_a_non_image_is_refused(client, tmp_path, payload, message):
    before = tree(tmp_path)
    status, body = await upload(client, "x.png", payload)
    assert status == 400 and message in body["error"]["message"]
    assert tree(tmp_path) == before


async def test_upload_form_errors(client, tmp_path):
    before = tree(tmp_path)
    # the captures: no file at all, and a file under another field name
    for capture_name, form in [("POST_upload_image_no_file_field", multipart({"overwrite": "true"})),
                               ("POST_upload_image_wrong_field_name", multipart(files={"file": ("a.png", png())}))]:
        resp = await client.post("/upload/image", **form)
        assert resp.status == capture(capture_name)["status"] == 400
        assert "image" in (await resp.json())["error"]["message"]
    cases = [
        multipart({"image": "just text"}),  # image as a plain field
        multipart({"type": "bogus"}, {"image": ("a.png", png())}),
        multipart({"type": ""}, {"image": ("a.png", png())}),
        {"json": {"image": "a.png"}},  # not a form at all
        {"data": b"--x\r\ngarbage", "headers": {"Content-Type": "multipart/form-data; boundary=zzz"}},
    ]
    for form in cases:
        resp = await client.post("/upload/image", **form)
        assert resp.status == 400, form
        assert (await resp.json())["error"]["message"]
    assert tree(tmp_path) == before


@pytest.mark.parametrize("filename, subfolder", [
    ("", ""),
    ("../../evil.png", ""),
    ("..", ""),
    ("/tmp/evil.png", ""),
    ("sub/evil.png", ""),
    ("a\\evil.png", ""),
    ("ev\x00il.png", ""),
    ("evil\n.png", ""),
    ("x" * 5000 + ".png", ""),
    ("evil.png", "../../"),
    ("evil.png", ".."),
    ("evil.png", "/tmp"),
    ("evil.png", "a/../../b"),
    ("evil.png", "sub\x00dir"),
    ("evil.png", "x" * 5000),
    ("evil.png", "a/" * 600),
])
async def test_upload_bad_names_are_400_and_write_nothing(client, tmp_path, filename, subfolder):
    before = tree(tmp_path)
    fields = {"subfolder": subfolder} if subfolder else {}
    status, body = await upload(client, filename, png(), **fields)
    assert status == 400
    if filename:  # an empty file name makes the part a plain field: no file sent
        assert body["error"]["type"] == "invalid_request"
    assert tree(tmp_path) == before


async def test_upload_traversal_captures(client, tmp_path):
    before = tree(tmp_path)
    for capture_name in ("POST_upload_image_traversal_filename", "POST_upload_image_traversal_subfolder"):
        expected = capture(capture_name)
        request = expected["request"]
        filename = request["files"]["image"][0]
        status, _ = await upload(client, filename, png(), **request.get("data", {}))
        assert status == expected["status"] == 400
    assert tree(tmp_path) == before


async def test_upload_through_a_symlink_out_of_the_folder_is_refused(client, tmp_path, dirs):
    outside = tmp_path / "outside"
    outside.mkdir()
    (dirs["input"] / "link").symlink_to(outside, target_is_directory=True)
    (dirs["input"] / "planted.png").symlink_to(outside / "planted.png")  # dangling, pointing out
    assert (await upload(client, "evil.png", png(), subfolder="link"))[0] == 400
    assert (await upload(client, "planted.png", png(), overwrite="true"))[0] == 400
    assert list(outside.iterdir()) == []


async def test_upload_where_a_folder_has_the_name(client, dirs):
    (dirs["input"] / "taken.png").mkdir()
    (dirs["input"] / "file").write_bytes(b"x")
    status, body = await upload(client, "taken.png", png())
    assert status == 200 and body["name"] == "taken (1).png"
    assert (await upload(client, "taken.png", png(), overwrite="true"))[0] == 400
    assert (await upload(client, "a.png", png(), subfolder="file/sub"))[0] == 400


async def test_upload_over_the_size_limit_is_413(aiohttp_client, tmp_path, registry):
    app = create_app(Settings(base_directory=tmp_path, cpu=True, max_upload_size_mb=0.05), registry)
    client = await aiohttp_client(app)
    small, big = encode(noise((16, 16))), encode(noise((256, 256)))
    assert len(big) > 0.05 * 1024 * 1024
    assert (await upload(client, "small.png", small))[0] == 200
    status, body = await upload(client, "big.png", big)
    assert status == 413 and "limit" in body["error"]["message"]
    assert not (tmp_path / "input" / "big.png").exists()


# -- masks ---------------------------------------------------------------------------------------------------

def mask_image(size=(8, 6)) -> Image.Image:
    """RGBA whose alpha is a gradient and whose colour must not leak into the result."""
    mask = Image.new("RGBA", size, (255, 0, 255, 0))
    for x in range(size[0]):
        for y in range(size[1]):
            mask.putpixel((x, y), (255, 0, 255, (x * 30 + y * 7) % 256))
    return mask


async def test_mask_composes_original_rgb_with_mask_alpha(client, dirs):
    original = noise((8, 6), seed=3)
    original_png = encode(original, pnginfo=_info({"prompt": '{"1": {}}', "workflow": "{}"}))
    assert (await upload(client, "orig.png", original_png, subfolder="clip"))[0] == 200
    mask = mask_image()
    ref = json.dumps({"filename": "orig.png", "subfolder": "clip", "type": "input"})
    status, body = await upload(client, "clipspace-mask-1.png", encode(mask), path="/upload/mask", original_ref=ref)
    assert status == 200 and body == {"name": "clipspace-mask-1.png", "subfolder": "", "type": "input"}

    resp = await client.get("/view", params={"filename": "clipspace-mask-1.png", "type": "input"})
    result = decode(await resp.read())
    assert result.format == "PNG" and result.mode == "RGBA" and result.size == (8, 6)
    for x in range(8):
        for y in range(6):
            assert result.getpixel((x, y)) == original.getpixel((x, y)) + (mask.getpixel((x, y))[3],)
    assert result.text == {"prompt": '{"1": {}}', "workflow": "{}"}  # the original's PNG text is kept

    # Like upstream, the same mask again gets a new name (dedup compares with the uploaded bytes).
    expected = capture("POST_upload_mask_with_original_ref_again")["body_json"]
    status, body = await upload(client, "clipspace-mask-1.png", encode(mask), path="/upload/mask", original_ref=ref)
    assert (status, body) == (200, expected)


def _info(text: dict) -> PngInfo:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    return info


async def test_mask_original_from_annotation_and_default_output(client, dirs):
    (dirs["output"] / "out.png").write_bytes(png(color=(40, 50, 60)))
    mask = encode(Image.new("L", (8, 6), 0))  # no alpha channel: fully opaque
    for ref in ({"filename": "out.png"}, {"filename": "out.png [output]", "type": "input"}):
        status, body = await upload(client, "m.png", mask, path="/upload/mask", original_ref=json.dumps(ref))
        assert status == 200
        result = decode((dirs["input"] / body["name"]).read_bytes())
        assert result.getpixel((0, 0)) == (40, 50, 60, 255)


@pytest.mark.parametrize("ref, status", [
    (None, 400),
    ("not json", 400),
    ("[1, 2]", 400),
    ('{"subfolder": ""}', 400),
    ('{"filename": 5}', 400),
    ('{"filename": "orig.png", "subfolder": 3}', 400),
    ('{"filename": ""}', 400),
    ('{"filename": "../orig.png", "type": "input"}', 400),
    ('{"filename": "/etc/passwd", "type": "input"}', 400),
    ('{"filename": "orig.png", "type": "bogus"}', 400),
    ('{"filename": "orig.png", "subfolder": "..", "type": "input"}', 403),
    ('{"filename": "nope.png", "type": "input"}', 404),
])
async def test_mask_bad_original_ref(client, tmp_path, dirs, ref, status):
    (dirs["input"] / "orig.png").write_bytes(png())
    before = tree(tmp_path)
    fields = {"original_ref": ref} if ref is not None else {}
    got, body = await upload(client, "m.png", encode(mask_image()), path="/upload/mask", **fields)
    assert got == status and body["error"]["message"]
    assert tree(tmp_path) == before


async def test_mask_size_mismatch_and_non_image_mask(client, tmp_path, dirs):
    (dirs["input"] / "orig.png").write_bytes(png(size=(8, 6)))
    ref = json.dumps({"filename": "orig.png", "type": "input"})
    before = tree(tmp_path)
    status, body = await upload(client, "m.png", encode(mask_image((4, 4))), path="/upload/mask", original_ref=ref)
    assert status == 400 and "size" in body["error"]["message"]
    status, _ = await upload(client, "m.png", b"not an image", path="/upload/mask", original_ref=ref)
    assert status == 400
    assert tree(tmp_path) == before


# -- /view ---------------------------------------------------------------------------------------------------

@pytest.fixture
def saved(dirs) -> Image.Image:
    """The image upstream's captures view: output/cap_saveimage_00001_.png, with some transparency."""
    image = noise((24, 16), seed=7, mode="RGBA")
    (dirs["output"] / "cap_saveimage_00001_.png").write_bytes(encode(image))
    (dirs["input"] / "comfyui.db").write_bytes(b"not for you")
    (dirs["input"].parent / "secret.txt").write_text(SECRET)
    (dirs["input"] / "capsub").mkdir()
    for where in (dirs["input"], dirs["input"] / "capsub"):
        (where / "cap_upload_6fb894.png").write_bytes(png())
    return image


@pytest.mark.parametrize("name", sorted(p.stem for p in CAPTURES.glob("GET_*view_*.json")))
async def test_view_replays_the_captures(client, saved, name):
    expected = capture(name)
    resp = await client.get(expected["request"]["path"])
    assert resp.status == expected["status"]
    if resp.status == 200:
        for header in ("Content-Type", "Content-Disposition", "ETag", "Last-Modified", "Accept-Ranges"):
            if header.lower() in {h.lower() for h in expected["headers"]}:
                wanted = {k.lower(): v for k, v in expected["headers"].items()}[header.lower()]
                assert header in resp.headers
                if header in ("Content-Type", "Content-Disposition"):
                    assert resp.headers[header] == wanted


async def test_view_missing_type_and_filename_errors(client, saved):
    cases = {
        "/view": 404,
        "/view?filename=": 400,
        "/view?filename=nope.png": 404,
        "/view?filename=cap_saveimage_00001_.png&type=": 400,
        "/view?filename=cap_saveimage_00001_.png&type=user": 400,
        "/view?filename=a%00b.png": 400,
        "/view?filename=" + "x" * 5000: 400,
        "/view?filename=cap_saveimage_00001_.png&subfolder=" + "x" * 5000: 400,
        "/view?filename=cap_saveimage_00001_.png&subfolder=a%00": 400,
        "/view?filename=sub/../../secret.txt": 400,
        "/view?filename=secret.txt&subfolder=/": 403,
        "/view?filename=secret.txt&subfolder=sub/../..": 403,
        "/view?filename=secret.txt&subfolder=%2Ftmp": 403,
        "/view?filename=cap_saveimage_00001_.png%20[output]&type=input": 200,
        "/view?filename=comfyui.db%20[input]": 200,
    }
    for path, status in cases.items():
        resp = await client.get(path)
        assert resp.status == status, path
        if status != 200:
            body = await resp.read()
            assert json.loads(body)["error"]["message"], path
            assert SECRET.encode() not in body


async def test_view_refuses_symlinks_out_of_the_folder(client, tmp_path, dirs):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png())
    (dirs["output"] / "leak.png").symlink_to(outside / "secret.png")
    (dirs["output"] / "door").symlink_to(outside, target_is_directory=True)
    assert (await client.get("/view?filename=leak.png")).status == 403
    assert (await client.get("/view?filename=secret.png&subfolder=door")).status == 403
    (dirs["output"] / "inside.png").symlink_to(dirs["output"] / "leak.png")
    assert (await client.get("/view?filename=inside.png")).status == 403


async def test_view_preview_reencodes(client, saved):
    resp = await client.get("/view?filename=cap_saveimage_00001_.png&preview=webp;90")
    assert resp.status == 200 and resp.content_type == "image/webp"
    assert resp.headers["Content-Disposition"] == 'filename="cap_saveimage_00001_.png"'
    webp = decode(await resp.read())
    assert webp.format == "WEBP" and webp.size == saved.size

    sizes = {}
    for quality in (5, 95):
        resp = await client.get(f"/view?filename=cap_saveimage_00001_.png&preview=jpeg;{quality}")
        assert resp.status == 200 and resp.content_type == "image/jpeg"
        data = await resp.read()
        assert decode(data).format == "JPEG" and decode(data).mode == "RGB"
        sizes[quality] = len(data)
    assert sizes[5] < sizes[95]

    # an alpha channel request, or an unknown format, gives webp
    for query in ("preview=jpeg;50&channel=a", "preview=gif", "preview="):
        resp = await client.get(f"/view?filename=cap_saveimage_00001_.png&{query}")
        assert resp.status == 200 and resp.content_type == "image/webp", query
    resp = await client.get("/view?filename=cap_saveimage_00001_.png&preview=webp;100&channel=rgb")
    assert decode(await resp.read()).mode == "RGB"


async def test_view_channels(client, saved, dirs):
    resp = await client.get("/view?filename=cap_saveimage_00001_.png&channel=rgb")
    assert resp.status == 200 and resp.content_type == "image/png"
    rgb = decode(await resp.read())
    assert rgb.mode == "RGB" and rgb.tobytes() == saved.convert("RGB").tobytes()

    resp = await client.get("/view?filename=cap_saveimage_00001_.png&channel=a")
    alpha = decode(await resp.read())
    assert alpha.mode == "RGBA" and alpha.size == saved.size
    assert alpha.getchannel("A").tobytes() == saved.getchannel("A").tobytes()
    assert set(alpha.convert("RGB").tobytes()) == {0}

    (dirs["output"] / "opaque.png").write_bytes(png(color=(1, 2, 3)))
    alpha = decode(await (await client.get("/view?filename=opaque.png&channel=a")).read())
    assert alpha.getextrema() == ((0, 0), (0, 0), (0, 0), (255, 255))

    resp = await client.get("/view?filename=cap_saveimage_00001_.png&channel=rgba")
    assert await resp.read() == (dirs["output"] / "cap_saveimage_00001_.png").read_bytes()


async def test_view_preview_of_a_non_image_is_400(client, dirs):
    (dirs["output"] / "notes.txt").write_text("hello")
    for query in ("preview=webp", "channel=a", "channel=rgb"):
        resp = await client.get(f"/view?filename=notes.txt&{query}")
        assert resp.status == 400 and "not an image" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("filename, content_type", [
    ("page.html", "application/octet-stream"),
    ("page.xhtml", "application/octet-stream"),
    ("drawing.svg", "application/octet-stream"),
    ("app.js", "application/octet-stream"),
    ("style.css", "application/octet-stream"),
    ("feed.xml", "application/octet-stream"),
    ("doc.pdf", "application/octet-stream"),
    ("weights.safetensors", "application/octet-stream"),
    ("notes.txt", "text/plain"),
    ("workflow.json", "application/json"),
    ("clip.mp4", "video/mp4"),
    ("sound.flac", "audio/flac"),
    ("pic.webp", "image/webp"),
])
async def test_view_content_types_never_render_active_content(client, dirs, filename, content_type):
    payload = b"<html><script>alert(document.cookie)</script></html>"
    (dirs["output"] / filename).write_bytes(payload)
    resp = await client.get("/view", params={"filename": filename})
    assert resp.status == 200 and await resp.read() == payload
    assert resp.headers["Content-Type"].split(";")[0] == content_type
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"] == f'filename="{filename}"'


async def test_view_quotes_the_disposition_name(client, dirs):
    (dirs["output"] / 'a"b.png').write_bytes(png())
    resp = await client.get("/view", params={"filename": 'a"b.png'})
    assert resp.status == 200 and resp.headers["Content-Disposition"] == 'filename="a\\"b.png"'


# -- /view_metadata ------------------------------------------------------------------------------------------

def safetensors(header: dict | None = None, *, raw: bytes | None = None, length: int | None = None) -> bytes:
    body = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + b"\x00" * 16


async def test_view_metadata(client, tmp_path):
    loras = tmp_path / "models" / "loras"
    (loras / "sub").mkdir(parents=True)
    metadata = {"ss_network_dim": "16", "modelspec.title": "test lora"}
    tensor = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    (loras / "styled.safetensors").write_bytes(safetensors({"__metadata__": metadata, **tensor}))
    (loras / "sub" / "nested.safetensors").write_bytes(safetensors({"__metadata__": {"a": "b"}, **tensor}))
    (loras / "plain.safetensors").write_bytes(safetensors(tensor))
    (loras / "huge.safetensors").write_bytes(safetensors(raw=b"{}", length=2**40))
    (loras / "corrupt.safetensors").write_bytes(safetensors(raw=b"{not json"))
    (loras / "tiny.safetensors").write_bytes(b"\x01\x02")
    (loras / "old.ckpt").write_bytes(b"x")
    (tmp_path / "models" / "outside.safetensors").write_bytes(safetensors({"__metadata__": {"x": "y"}}))

    resp = await client.get("/view_metadata/loras?filename=styled.safetensors")
    assert resp.status == 200 and await resp.json() == metadata
    resp = await client.get("/api/view_metadata/loras?filename=sub/nested.safetensors")
    assert resp.status == 200 and await resp.json() == {"a": "b"}

    cases = {
        "/view_metadata/loras": 404,
        "/view_metadata/loras?filename=plain.safetensors": 404,
        "/view_metadata/loras?filename=huge.safetensors": 404,
        "/view_metadata/loras?filename=corrupt.safetensors": 404,
        "/view_metadata/loras?filename=tiny.safetensors": 404,
        "/view_metadata/loras?filename=missing.safetensors": 404,
        "/view_metadata/loras?filename=old.ckpt": 404,
        "/view_metadata/nosuchfolder?filename=styled.safetensors": 404,
        "/view_metadata/loras?filename=": 400,
        "/view_metadata/loras?filename=../outside.safetensors": 400,
        "/view_metadata/loras?filename=/etc/x.safetensors": 400,
        "/view_metadata/loras?filename=a%00.safetensors": 400,
        "/view_metadata/loras?filename=" + "x" * 5000 + ".safetensors": 400,
    }
    for path, status in cases.items():
        resp = await client.get(path)
        assert resp.status == status, path
        assert (await resp.json())["error"]["message"]


# -- /experiment/models/preview ------------------------------------------------------------------------------

def decoded_webp(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    assert image.format == "WEBP"
    return image.convert("RGB")


async def test_model_previews_for_the_model_library(client, tmp_path):
    import base64
    import os

    checkpoints = tmp_path / "models" / "checkpoints"
    (checkpoints / "sub").mkdir(parents=True)
    tensor = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    (checkpoints / "beside.safetensors").write_bytes(safetensors(tensor))
    (checkpoints / "beside.png").write_bytes(png(size=(12, 10), color=(200, 0, 0)))
    (checkpoints / "sub" / "named.ckpt").write_bytes(b"x")
    (checkpoints / "sub" / "named.preview.jpeg").write_bytes(png(size=(7, 5), color=(0, 200, 0)))
    cover = base64.b64encode(png(size=(9, 9), color=(0, 0, 200))).decode()
    (checkpoints / "covered.safetensors").write_bytes(safetensors(
        {"__metadata__": {"ssmd_cover_images": json.dumps([cover])}, **tensor}))
    (checkpoints / "bare.safetensors").write_bytes(safetensors(tensor))
    (checkpoints / "broken.safetensors").write_bytes(safetensors(
        {"__metadata__": {"ssmd_cover_images": "not json"}, **tensor}))
    (tmp_path / "secret.png").write_bytes(png())
    os.symlink(tmp_path / "secret.png", checkpoints / "linked.png")

    # what the frontend asks for: the model's name with .webp for its extension
    for path, size, color in (("beside.webp", (12, 10), (200, 0, 0)), ("sub/named.webp", (7, 5), (0, 200, 0)),
                              ("covered.webp", (9, 9), (0, 0, 200))):
        resp = await client.get(f"/api/experiment/models/preview/checkpoints/0/{path}")
        assert resp.status == 200 and resp.content_type == "image/webp", path
        image = decoded_webp(await resp.read())
        assert image.size == size and all(abs(a - b) < 12 for a, b in zip(image.getpixel((2, 2)), color)), path

    cases = {
        "checkpoints/0/bare.webp": 404, "checkpoints/0/broken.webp": 404, "checkpoints/0/missing.webp": 404,
        "checkpoints/0/linked.webp": 404, "checkpoints/1/beside.webp": 404, "checkpoints/x/beside.webp": 404,
        "nosuchfolder/0/beside.webp": 404, "checkpoints/0/..%2F..%2Fsecret.webp": 400,
        "checkpoints/0/sub%2F..%2F..%2F..%2Fsecret.webp": 400,
    }
    for path, status in cases.items():
        resp = await client.get(f"/api/experiment/models/preview/{path}")
        assert resp.status == status, path
        assert (await resp.json())["error"]["message"]
