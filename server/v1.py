"""The programmatic API under /api/v1 (the hiddenswitch ComfyUI fork's): what a client may send and accept, and
the outputs and images a finished prompt answers with. Handlers are in `server.handlers.v1`."""
from __future__ import annotations

import dataclasses
import mimetypes
import os
from pathlib import Path
from urllib.parse import urlencode

from engine import HistoryRecord

from .files import FileRef, MediaStore, render

JSON = "application/json"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# What each wildcard means: JSON for anything, PNG for any image.
WILDCARDS = {"*/*": JSON, "application/*": JSON, "image/*": "image/png"}
RESPOND_ASYNC = "respond-async"


class V1Error(ValueError):
    """A request the v1 API refuses with 400; the message says why."""


@dataclasses.dataclass(frozen=True)
class Wanted:
    media_type: str  # application/json or one of IMAGE_TYPES
    respond_async: bool


def negotiate(accept: str | None, prefer: str | None) -> Wanted:
    """The answer a client wants from its Accept header (most preferred supported type; `+respond-async` on a
    type asks for the asynchronous answer, as in the fork) and its Prefer header (`respond-async`)."""
    respond_async = RESPOND_ASYNC in [token.strip().lower() for token in (prefer or "").replace(";", ",").split(",")]
    if not accept or not accept.strip():
        return Wanted(JSON, respond_async)
    choices = []
    for position, part in enumerate(accept.split(",")):
        media, *params = [p.strip().lower() for p in part.split(";")]
        media, suffix = media.split("+", 1) if "+" in media else (media, "")
        respond_async = respond_async or suffix == RESPOND_ASYNC
        media = WILDCARDS.get(media, media)
        if media in (JSON, *IMAGE_TYPES):
            choices.append((-_quality(params), position, media))
    choices = [choice for choice in choices if choice[0] < 0]
    if not choices:
        raise V1Error(f"Accept must allow one of: {', '.join((JSON, *IMAGE_TYPES))}; got {accept!r}"[:300])
    return Wanted(min(choices)[2], respond_async)


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


@dataclasses.dataclass(frozen=True)
class PromptRequest:
    prompt: dict
    extra_data: dict


def prompt_request(body: dict) -> PromptRequest:
    """A bare API-format graph, or ComfyUI's `{"prompt": graph, "extra_data"?, "client_id"?}`."""
    wrapped = body.get("prompt")
    if not isinstance(wrapped, dict) or "class_type" in wrapped:  # a node whose id happens to be "prompt"
        return PromptRequest(body, {})
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise V1Error("extra_data must be a JSON object.")
    client_id = body.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str):
            raise V1Error("client_id must be a string.")
        extra_data = {**extra_data, "client_id": client_id}
    return PromptRequest(wrapped, extra_data)


# -- answers -----------------------------------------------------------------------------------------------------

def succeeded(record: HistoryRecord) -> bool:
    """False for a prompt that failed, was interrupted or was deleted from the queue: its answer is a 500."""
    return record.entry["status"]["status_str"] == "success"


def output_images(outputs: dict) -> list[FileRef]:
    """Every image a prompt's UI outputs list (`images` of each node, in output order)."""
    refs = []
    for output in outputs.values():
        images = output.get("images") if isinstance(output, dict) else None
        for image in images if isinstance(images, list) else []:
            if isinstance(image, dict) and isinstance(image.get("filename"), str):
                refs.append(FileRef(str(image.get("type", "output")), str(image.get("subfolder", "")),
                                    image["filename"]))
    return refs


def view_url(origin: str, ref: FileRef) -> str:
    query = {"filename": ref.filename, "type": ref.kind}
    if ref.subfolder:
        query["subfolder"] = ref.subfolder
    return f"{origin}/view?{urlencode(query)}"


def outputs_answer(record: HistoryRecord, origin: str) -> dict:
    outputs = record.entry["outputs"]
    return {"urls": [view_url(origin, ref) for ref in output_images(outputs)], "outputs": outputs,
            "prompt_id": record.item.prompt_id}


def image_for_digest(records: list[HistoryRecord], digest: str) -> FileRef | None:
    """The first image of the latest successful run of the prompt whose digest this is."""
    for record in reversed(records):
        if not record.listed or not succeeded(record):
            continue
        images = output_images(record.entry["outputs"])
        # The digest is computed last: only runs that have an image pay for hashing their prompt.
        if images and record.item.digest == digest:
            return images[0]
    return None


def encoded_image(store: MediaStore, ref: FileRef, media_type: str) -> tuple[Path | bytes, str]:
    """The image `ref` names as `media_type`, and its file name: the file itself when it already is one,
    else re-encoded. Blocks on disk and image work."""
    path = store.locate(ref)
    if mimetypes.guess_type(path.name)[0] == media_type:
        return path, path.name
    fmt = media_type.split("/", 1)[1]
    body, _ = render(path, None, "rgb") if fmt == "png" else render(path, f"{fmt};95", "")
    return body, os.path.splitext(path.name)[0] + mimetypes.guess_extension(media_type)
