"""openapi.yaml kept honest: structurally valid OpenAPI 3.1, the same operations as the route table, every
websocket message the server sends documented, and live answers (and upstream's captured ones) that match it."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path

import pytest
import yaml
from aiohttp import FormData
from PIL import Image
from yarl import URL

from engine import events
from server.routes import INTERNAL_PREFIX, INTERNAL_ROUTES, ROUTES
from tests.conftest import messages_until, next_message, run_finished
from tests.upstream import CAPTURES

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILE = ROOT / "openapi.yaml"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Keywords the validator below checks, and keywords that only annotate; a schema using anything else fails the
# structural test, so no constraint in the spec is silently ignored by the live checks.
VALIDATED = {"$ref", "type", "const", "enum", "properties", "required", "additionalProperties", "items",
             "prefixItems", "minItems", "maxItems", "maxProperties", "minimum", "minLength", "allOf", "anyOf", "oneOf"}
ANNOTATIONS = {"description", "default", "examples", "contentMediaType", "discriminator", "title", "format"}
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def resolve(spec: dict, node):
    """Follow a local `$ref` (transitively); other nodes are returned as they are."""
    while isinstance(node, dict) and "$ref" in node and set(node) == {"$ref"}:
        target = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield method, path, item, item[method]


# -- the document is structurally valid OpenAPI 3.1 -------------------------------------------------------------

def _refs(node, where="#"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value, where
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{where}/{i}")


def _schema_problems(schema, where: str) -> list[str]:
    if schema is True or schema is False:
        return []
    if not isinstance(schema, dict):
        return [f"{where}: a schema must be an object"]
    problems = [f"{where}: unsupported keyword {k!r}" for k in schema
                if k not in VALIDATED | ANNOTATIONS and not k.startswith("x-")]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        problems += [f"{where}: unknown type {t!r}" for t in types
                     if t not in ("object", "array", "string", "number", "integer", "boolean", "null")]
    properties = schema.get("properties", {})
    if "properties" in schema or schema.get("additionalProperties") is False:
        problems += [f"{where}: required {name!r} is not among the properties" for name in schema.get("required", [])
                     if name not in properties]
    subschemas = [(f"{where}/properties/{k}", v) for k, v in properties.items()]
    subschemas += [(f"{where}/{k}", schema[k]) for k in ("additionalProperties", "items") if k in schema]
    subschemas += [(f"{where}/{k}/{i}", s) for k in SUBSCHEMA_LISTS for i, s in enumerate(schema.get(k, []))]
    for sub_where, sub in subschemas:
        problems += _schema_problems(sub, sub_where)
    return problems


def _media_problems(spec, content: dict, where: str) -> list[str]:
    problems = [] if content else [f"{where}: empty content"]
    for media, body in content.items():
        if not re.fullmatch(r"[\w.+*-]+/[\w.+*-]+", media):
            problems.append(f"{where}: bad media type {media!r}")
        if "schema" in body:
            problems += _schema_problems(body["schema"], f"{where}/{media}/schema")
    return problems


def structural_problems(spec: dict) -> list[str]:
    problems = []
    if not re.fullmatch(r"3\.1\.\d+", str(spec.get("openapi"))):
        problems.append("openapi must be 3.1.x")
    info = spec.get("info", {})
    if not isinstance(info.get("title"), str) or not isinstance(info.get("version"), str):
        problems.append("info needs a title and a version (strings)")
    top = {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components", "security", "tags",
           "externalDocs"}
    problems += [f"unknown top-level field {k!r}" for k in spec if k not in top and not k.startswith("x-")]
    for ref, where in _refs(spec):
        try:
            assert isinstance(ref, str) and ref.startswith("#/")
            resolve(spec, {"$ref": ref})
        except (AssertionError, KeyError, TypeError):
            problems.append(f"{where}: $ref {ref!r} does not resolve")
    tags = {t["name"] for t in spec.get("tags", [])}
    operation_ids = []
    item_fields = {"$ref", "summary", "description", "servers", "parameters", *HTTP_METHODS}
    for path, item in spec["paths"].items():
        if not path.startswith("/"):
            problems.append(f"path {path!r} must start with /")
        problems += [f"{path}: unknown field {k!r}" for k in item if k not in item_fields and not k.startswith("x-")]
    for method, path, item, op in operations(spec):
        where = f"{method.upper()} {path}"
        if not isinstance(op.get("summary"), str) or not op["summary"]:
            problems.append(f"{where}: no summary")
        operation_ids.append(op.get("operationId"))
        problems += [f"{where}: undeclared tag {t!r}" for t in op.get("tags", []) if t not in tags]
        params = [resolve(spec, p) for p in item.get("parameters", []) + op.get("parameters", [])]
        for p in params:
            if not isinstance(p.get("name"), str) or p.get("in") not in ("query", "header", "path", "cookie"):
                problems.append(f"{where}: parameter {p!r} needs a name and a valid `in`")
            elif ("schema" in p) == ("content" in p):
                problems.append(f"{where}: parameter {p['name']!r} needs exactly one of schema, content")
            else:
                problems += _schema_problems(p.get("schema", True), f"{where} parameter {p['name']}")
            if p.get("in") == "path" and p.get("required") is not True:
                problems.append(f"{where}: path parameter {p.get('name')!r} must be required")
        keys = [(p.get("name"), p.get("in")) for p in params]
        if len(keys) != len(set(keys)):
            problems.append(f"{where}: duplicate parameters")
        declared = {p.get("name") for p in params if p.get("in") == "path"}
        if declared != set(re.findall(r"{([^}]+)}", path)):
            problems.append(f"{where}: path parameters {sorted(declared)} do not match the template")
        if "requestBody" in op:
            problems += _media_problems(spec, resolve(spec, op["requestBody"]).get("content", {}), f"{where} body")
        if not op.get("responses"):
            problems.append(f"{where}: no responses")
        for code, response in op.get("responses", {}).items():
            if not isinstance(code, str) or not re.fullmatch(r"[1-5](\d\d|XX)|default", code):
                problems.append(f"{where}: response code {code!r} must be a quoted status code")
            response = resolve(spec, response)
            if not isinstance(response.get("description"), str):
                problems.append(f"{where} {code}: no description")
            if "content" in response:
                problems += _media_problems(spec, response["content"], f"{where} {code}")
    if len(operation_ids) != len(set(operation_ids)) or None in operation_ids:
        problems.append("operationIds must be present and unique")
    components = spec.get("components", {})
    for name, schema in components.get("schemas", {}).items():
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            problems.append(f"bad component name {name!r}")
        problems += _schema_problems(schema, f"#/components/schemas/{name}")
    used = {ref for ref, _ in _refs(spec)}
    problems += [f"component {kind}/{name} is never referenced" for kind in ("schemas", "responses", "parameters")
                 for name in components.get(kind, {}) if f"#/components/{kind}/{name}" not in used]
    return problems


def test_spec_is_structurally_valid_openapi_3_1(spec):
    assert structural_problems(spec) == []
    assert "/api" in spec["info"]["description"]


# -- a validator for the JSON-schema subset the spec uses ----------------------------------------------------------

def _is_type(value, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float)
                                                                             and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    python = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}[kind]
    return isinstance(value, python)


def schema_errors(spec: dict, value, schema, where: str = "$") -> list[str]:
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{where}: not allowed"]
    errors = []
    if "$ref" in schema:
        errors += schema_errors(spec, value, resolve(spec, {"$ref": schema["$ref"]}), where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return errors + [f"{where}: {value!r:.80} is not of type {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r:.80} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r:.80} is not one of {schema['enum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        errors.append(f"{where}: shorter than {schema['minLength']}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} is less than {schema['minimum']}")
    if isinstance(value, dict):
        errors += [f"{where}: {name!r} is missing" for name in schema.get("required", []) if name not in value]
        if len(value) > schema.get("maxProperties", len(value)):
            errors.append(f"{where}: more than {schema['maxProperties']} properties")
        properties = schema.get("properties", {})
        for name, item in value.items():
            sub = properties.get(name, schema.get("additionalProperties", True))
            errors += schema_errors(spec, item, sub, f"{where}.{name}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            errors.append(f"{where}: {len(value)} items, outside [{schema.get('minItems')}, {schema.get('maxItems')}]")
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += schema_errors(spec, item, sub, f"{where}[{i}]")
    for sub in schema.get("allOf", []):
        errors += schema_errors(spec, value, sub, where)
    for keyword, wanted in (("anyOf", lambda n: n >= 1), ("oneOf", lambda n: n == 1)):
        if keyword in schema:
            outcomes = [schema_errors(spec, value, sub, where) for sub in schema[keyword]]
            if not wanted(sum(not o for o in outcomes)):
                closest = min(outcomes, key=len)
                errors.append(f"{where}: matches {sum(not o for o in outcomes)} of {keyword} ({closest[:3]})")
    return errors


def test_the_validator_catches_what_it_should(spec):
    item = {"$ref": "#/components/schemas/QueueItem"}
    assert schema_errors(spec, [1, "id", {}, {}, ["9"]], item) == []
    assert schema_errors(spec, [1, "id", {}, {}], item)  # 4 elements
    assert schema_errors(spec, [1, 2, {}, {}, []], item)  # prompt id not a string
    assert schema_errors(spec, {"error": {"type": "x", "message": "", "details": ""}, "node_errors": {}},
                         {"$ref": "#/components/schemas/ErrorResponse"})  # extra_info missing
    assert schema_errors(spec, {"type": "progress", "data": {}}, {"$ref": "#/components/schemas/WebSocketMessages"})
    assert schema_errors(spec, True, {"type": "integer"}) and schema_errors(spec, None, {"type": "string"})


# -- the spec and the route table describe the same operations ----------------------------------------------------

def spec_operations(spec: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for method, path, _, _ in operations(spec)}


def test_every_route_is_documented_and_every_operation_is_routed(spec):
    # A path parameter's pattern ({filename:.*}: one that spans slashes) is the router's business, not the spec's.
    routed = {(method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)) for method, path, _ in ROUTES} | {("GET", "/ws")} \
        | {(method, INTERNAL_PREFIX + path) for method, path, _ in INTERNAL_ROUTES}
    documented = spec_operations(spec)
    assert sorted(routed - documented) == [], "routes missing from openapi.yaml"
    assert sorted(documented - routed) == [], "operations in openapi.yaml that no route serves"
    assert not [p for _, p in documented if p.startswith("/api/")], "paths are documented in their bare form"


async def test_the_app_serves_each_documented_path_bare_and_under_api(client, spec):
    # Static files (the frontend, templates, docs, extension scripts) are not API routes.
    served = {(r.method, r.resource.canonical) for r in client.app.router.routes()
              if r.method != "HEAD" and r.handler.__module__ != "server.static"}
    documented = spec_operations(spec)
    internal = {(m, p) for m, p in documented if p.startswith(INTERNAL_PREFIX + "/")}
    assert served == documented | {(m, "/api" + p) for m, p in documented - internal}


# -- every websocket message the server sends is documented --------------------------------------------------------

EMIT = re.compile(r"""(?:\bemit|\.send)\(\s*["'](\w+)["']""")
TYPE_LITERAL = re.compile(r"""["']type["']\s*:\s*["'](\w+)["']""")
SEND_BYTES = re.compile(r"(?:send_bytes|binary_frame)\(\s*(?:events\.)?([A-Z_]+)\b")


def _sources():
    for package in ("engine", "nodes", "server"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, path.read_text(encoding="utf-8")


def emitted_message_types() -> set[str]:
    """`emit("x"` / `.send("x"` anywhere in the server's code, and the literal messages server/ws.py builds."""
    types = set()
    for path, text in _sources():
        types |= set(EMIT.findall(text))
        if path == ROOT / "server" / "ws.py":
            types |= set(TYPE_LITERAL.findall(text))
    return types


def documented_message_types(spec: dict) -> set[str]:
    section = spec["components"]["schemas"]["WebSocketMessages"]
    mapping = section["discriminator"]["mapping"]
    assert sorted(mapping.values()) == sorted(s["$ref"] for s in section["oneOf"])
    for kind, ref in mapping.items():
        assert resolve(spec, {"$ref": ref})["properties"]["type"]["const"] == kind
    return set(mapping)


def test_every_emitted_message_type_is_documented_and_no_other(spec):
    emitted = emitted_message_types()
    assert {"status", "feature_flags", "executing", "execution_error"} <= emitted  # the scan itself works
    assert emitted == documented_message_types(spec)


def test_binary_frame_codes_match_the_engine(spec):
    frame = spec["components"]["schemas"]["WebSocketBinaryFrame"]
    constants = {name: value for name, value in vars(events).items() if name.isupper() and isinstance(value, int)}
    formats = {k: v for k, v in constants.items() if k.startswith("FORMAT_")}
    assert {f["name"]: f["code"] for f in frame["x-frame-types"]} == {k: v for k, v in constants.items()
                                                                      if k not in formats}
    assert {"FORMAT_" + f["name"]: f["code"] for f in frame["x-image-formats"]} == formats
    sent = {name for _, text in _sources() for name in SEND_BYTES.findall(text)}
    assert {f["name"] for f in frame["x-frame-types"] if f["sent_by_comfyd"]} == sent


# -- live answers match the spec -------------------------------------------------------------------------------------

def match_path(spec: dict, raw_path: str) -> str | None:
    """The spec path template a request path (raw, possibly with /api and a query) is served by."""
    path = raw_path.split("?", 1)[0]
    path = path[len("/api"):] if path.startswith("/api/") else path
    segments = path.split("/")
    best, best_score = None, -1
    for template in spec["paths"]:
        parts = template.split("/")
        if len(parts) == len(segments) and all(p == s or (p.startswith("{") and s) for p, s in zip(parts, segments)):
            score = sum(p == s for p, s in zip(parts, segments))
            if score > best_score:
                best, best_score = template, score
    return best


def documented_response(spec: dict, method: str, raw_path: str, status: int) -> dict:
    template = match_path(spec, raw_path)
    assert template is not None, f"{method} {raw_path} is not in the spec"
    responses = spec["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, which the spec does not document"
    return resolve(spec, responses[str(status)])


def media_schema(response: dict, content_type: str):
    """The declared schema for a content type (wildcards such as image/* match); AssertionError if undeclared."""
    for media, body in response.get("content", {}).items():
        if media in (content_type, "*/*") or (media.endswith("/*") and content_type.startswith(media[:-1])):
            return body.get("schema", True)
    raise AssertionError(f"content type {content_type} is not declared ({sorted(response.get('content', {}))})")


async def conforms(spec: dict, client, method: str, raw_path: str, status: int, **kwargs):
    """Send a request; assert it answered `status`, documented, with a body the spec describes. Returns the body."""
    url = URL(str(client.make_url("/")).rstrip("/") + raw_path, encoded=True)  # sent as written, %2F kept
    resp = await client.session.request(method, url, **kwargs)
    raw = await resp.read()
    assert resp.status == status, (method, raw_path, resp.status, raw[:300])
    response = documented_response(spec, method, raw_path, status)
    if not raw:
        return None
    schema = media_schema(response, resp.content_type)
    if resp.content_type == "application/json":
        body = json.loads(raw)
    elif resp.content_type.startswith("text/"):
        body = raw.decode()
    else:
        return raw
    errors = schema_errors(spec, body, schema)
    assert errors == [], (method, raw_path, errors[:5])
    return body


async def test_idle_answers_match_the_spec(client, spec):
    for path in ("/queue", "/history", "/prompt", "/system_stats", "/features", "/object_info/TestAdd", "/models",
                 "/object_info", "/object_info/NoSuchNode", "/embeddings", "/extensions", "/models/checkpoints",
                 "/experiment/models", "/experiment/models/checkpoints", "/users", "/settings", "/settings/Nope",
                 "/i18n", "/workflow_templates", "/v2/userdata", "/api/queue", "/api/system_stats",
                 "/global_subgraphs", "/internal/logs", "/internal/logs/raw", "/internal/folder_paths",
                 "/internal/files/input"):
        await conforms(spec, client, "GET", path, 200)
    assert (await conforms(spec, client, "GET", "/object_info/TestAdd", 200))["TestAdd"]["name"] == "TestAdd"


async def test_error_answers_match_the_spec(client, spec):
    cases = [
        ("POST", "/prompt", 400, {"data": b""}), ("POST", "/prompt", 400, {"data": b"{"}),
        ("POST", "/prompt", 400, {"json": []}), ("POST", "/prompt", 400, {"json": {"prompt": {}}}),
        ("POST", "/prompt", 400, {"json": {"prompt": {
            "1": {"class_type": "TestValidated", "inputs": {"value": 3}},
            "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}}}),
        ("POST", "/queue", 400, {"data": b"[1]"}), ("POST", "/history", 400, {"json": {"delete": "x"}}),
        ("POST", "/interrupt", 400, {"json": {"prompt_id": 5}}), ("POST", "/free", 400, {"json": [1]}),
        ("GET", "/history?max_items=-1", 400, {}), ("GET", "/history?offset=x", 400, {}),
        ("GET", "/models/nosuch", 404, {}), ("GET", "/experiment/models/nosuch", 404, {}),
        ("GET", "/view", 404, {}), ("GET", "/view?filename=x.png&type=bogus", 400, {}),
        ("GET", "/view?filename=..%2Fx.png", 400, {}), ("GET", "/view?filename=x&subfolder=..%2F..", 403, {}),
        ("GET", "/view?filename=nope.png", 404, {}), ("GET", "/view_metadata/checkpoints", 404, {}),
        ("GET", "/view_metadata/checkpoints?filename=x.safetensors", 404, {}),
        ("POST", "/upload/image", 400, {"data": FormData({"nope": "x"})}),
        ("GET", "/userdata", 400, {}), ("GET", "/userdata?dir=nowhere", 404, {}),
        ("GET", "/userdata/nope.json", 404, {}), ("GET", "/userdata/..%2F..%2Fx", 403, {}),
        ("DELETE", "/userdata/nope.json", 404, {}), ("GET", "/v2/userdata?path=nowhere", 404, {}),
        ("GET", "/ws", 400, {}), ("GET", "/internal/files/models", 400, {}),
        ("PATCH", "/internal/logs/subscribe", 400, {"json": {"clientId": "x"}}),
    ]
    for method, path, status, kwargs in cases:
        await conforms(spec, client, method, path, status, **kwargs)


def png_bytes(size=(8, 8), color=(200, 30, 30, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_file_and_userdata_round_trips_match_the_spec(client, spec):
    form = FormData()
    form.add_field("image", png_bytes(), filename="spec.png", content_type="image/png")
    uploaded = await conforms(spec, client, "POST", "/upload/image", 200, data=form)
    assert uploaded == {"name": "spec.png", "subfolder": "", "type": "input"}
    image = await conforms(spec, client, "GET", "/view?filename=spec.png&type=input", 200)
    assert Image.open(io.BytesIO(image)).size == (8, 8)
    await conforms(spec, client, "GET", "/view?filename=spec.png&type=input&preview=webp;50", 200)
    mask = FormData()
    mask.add_field("image", png_bytes(color=(0, 0, 0, 0)), filename="mask.png", content_type="image/png")
    await conforms(spec, client, "POST", "/upload/mask", 400, data=mask)  # no original_ref

    await conforms(spec, client, "POST", "/settings", 200, json={"Comfy.A": 1})
    await conforms(spec, client, "POST", "/settings/Comfy.B", 200, json=[1, 2])
    assert await conforms(spec, client, "GET", "/settings/Comfy.B", 200) == [1, 2]
    await conforms(spec, client, "POST", "/userdata/workflows%2Fa.json", 200, data=b'{"a": 1}')
    await conforms(spec, client, "POST", "/userdata/workflows%2Fa.json?overwrite=false", 409, data=b"{}")
    await conforms(spec, client, "GET", "/userdata/workflows%2Fa.json", 200)
    for query in ("", "&recurse=true&full_info=true", "&recurse=true&split=true"):
        await conforms(spec, client, "GET", f"/userdata?dir=workflows{query}", 200)
    await conforms(spec, client, "GET", "/v2/userdata?path=workflows", 200)
    await conforms(spec, client, "POST", "/userdata/workflows%2Fa.json/move/workflows%2Fb.json?full_info=true", 200)
    await conforms(spec, client, "POST", "/userdata/workflows%2Fa.json/move/workflows%2Fc.json", 404)
    await conforms(spec, client, "DELETE", "/userdata/workflows%2Fb.json", 204)


def _slow_prompt(steps: int) -> dict:
    return {"1": {"class_type": "TestSlow", "inputs": {"value": 3, "steps": steps, "delay": 0.01}},
            "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}}


async def _queue(spec, client, prompt: dict) -> str:
    body = await conforms(spec, client, "POST", "/prompt", 200, json={"prompt": prompt, "client_id": "spec"})
    return body["prompt_id"]


async def test_runs_send_only_documented_messages_and_record_documented_history(client, spec):
    """A success, a failure and an interrupt: every message validates, and together they use every type."""
    ws = await client.ws_connect("/ws?clientId=spec")
    messages = [await next_message(ws)]
    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    messages.append(await next_message(ws))
    await conforms(spec, client, "PATCH", "/internal/logs/subscribe", 200, json={"clientId": "spec", "enabled": True})
    logging.getLogger("tests.openapi").warning("a line for the terminal panel")

    ok = await _queue(spec, client, _slow_prompt(3))
    messages += await messages_until(ws, run_finished(ok))
    failed = await _queue(spec, client, {"1": {"class_type": "TestFail", "inputs": {"value": 1, "message": "boom"}},
                                         "2": {"class_type": "TestOutput", "inputs": {"value": ["1", 0]}}})
    messages += await messages_until(ws, run_finished(failed))
    interrupted = await _queue(spec, client, _slow_prompt(2000))
    messages += await messages_until(ws, lambda m: isinstance(m, dict) and m["type"] == "progress")
    await conforms(spec, client, "GET", "/queue", 200)
    await conforms(spec, client, "POST", "/interrupt", 200, json={"prompt_id": interrupted})
    messages += await asyncio.wait_for(messages_until(ws, run_finished(interrupted)), 20)
    await ws.close()

    message_schema = {"$ref": "#/components/schemas/WebSocketMessages"}
    for message in messages:
        assert isinstance(message, dict), "no binary frames expected without previews"
        assert schema_errors(spec, message, message_schema) == [], message
    assert {m["type"] for m in messages} == documented_message_types(spec)

    history = await conforms(spec, client, "GET", "/history", 200)
    assert [history[i]["status"]["status_str"] for i in (ok, failed, interrupted)] == ["success", "error", "error"]
    assert list(await conforms(spec, client, "GET", f"/api/history/{ok}", 200)) == [ok]
    await conforms(spec, client, "GET", "/history?max_items=1&offset=1", 200)
    await conforms(spec, client, "POST", "/history", 200, json={"delete": [ok]})
    await conforms(spec, client, "POST", "/queue", 200, json={"clear": True})
    await conforms(spec, client, "POST", "/free", 200, json={"unload_models": True})


# -- upstream's captured answers match the spec as well ---------------------------------------------------------

def test_upstream_captures_match_the_spec(spec):
    checked = 0
    for capture in sorted(CAPTURES.glob("*.json")):
        if capture.name.startswith("ws_"):
            continue
        cap = json.loads(capture.read_text())
        method, path, status = cap["request"]["method"], cap["request"]["path"], cap["status"]
        # Upstream's 500s for bad input are where comfyd deliberately answers 400; unknown routes and the static
        # index are outside the API.
        if status == 500 or (match_path(spec, path) is None and status == 404) or path == "/":
            continue
        response = documented_response(spec, method, path, status)
        content_type = (cap["headers"].get("Content-Type") or "").split(";")[0]
        if "body_json" in cap:
            errors = schema_errors(spec, cap["body_json"], media_schema(response, content_type))
            assert errors == [], (capture.name, errors[:5])
        elif "body_text" in cap:
            assert schema_errors(spec, cap["body_text"], media_schema(response, content_type)) == [], capture.name
        elif cap["body_bytes"]["len"]:
            media_schema(response, content_type)
        checked += 1
    assert checked > 100


def test_upstream_websocket_captures_match_the_spec(spec):
    frame_types = {f["code"] for f in spec["components"]["schemas"]["WebSocketBinaryFrame"]["x-frame-types"]}
    formats = {f["code"] for f in spec["components"]["schemas"]["WebSocketBinaryFrame"]["x-image-formats"]}
    message_schema = {"$ref": "#/components/schemas/WebSocketMessages"}
    seen = set()
    for capture in sorted(CAPTURES.glob("ws_*.json")):
        for frame in json.loads(capture.read_text())["frames"]:
            if frame.get("kind") == "text":
                assert schema_errors(spec, frame["json"], message_schema) == [], (capture.name, frame["json"])
                seen.add(frame["json"]["type"])
            elif frame.get("kind") == "binary":
                assert frame["be_u32_event_type"] in frame_types
                if frame["be_u32_event_type"] == events.PREVIEW_IMAGE:
                    assert frame["be_u32_second_word"] in formats
    assert len(seen) >= 9
