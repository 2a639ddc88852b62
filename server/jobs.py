"""The job view the latest frontend reads (`/api/jobs`): the engine's queue and history as one list of jobs.

Statuses: `pending` (queued), `in_progress` (running), `completed`, `failed` (an error), `cancelled` (interrupted,
or deleted from the queue before it ran). Field names and semantics follow upstream ComfyUI's jobs API.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping
from urllib.parse import urlencode

from engine import Engine, HistoryRecord, QueueItem

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
SORT_FIELDS = ("created_at", "execution_duration")
SORT_ORDERS = ("asc", "desc")
# Output kinds the frontend can preview, and file extensions it previews whatever their kind.
PREVIEWABLE_KINDS = frozenset({"images", "video", "audio", "3d", "text"})
MODEL_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb", ".usdz")
TEXT_EXTENSIONS = (".txt", ".md", ".json")
TEXT_PREVIEW_CHARS = 1024
END_MESSAGES = ("execution_success", "execution_error", "execution_interrupted")


class QueryError(ValueError):
    """A query parameter the job routes refuse; the message says which and why."""


def _integer(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise QueryError(f"{name} must be an integer")


def page_window(query: Mapping[str, str]) -> tuple[int | None, int]:
    """(limit, offset) as upstream reads them: limit positive when given, a negative offset counts as 0."""
    limit = _integer(query, "limit")
    if limit is not None and limit <= 0:
        raise QueryError("limit must be a positive integer")
    return limit, max(_integer(query, "offset") or 0, 0)


@dataclasses.dataclass(frozen=True)
class JobQuery:
    statuses: frozenset[str] = frozenset(STATUSES)
    workflow_id: str | None = None
    sort_by: str = "created_at"
    sort_order: str = "desc"
    limit: int | None = None
    offset: int = 0

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> "JobQuery":
        statuses = [s.strip().lower() for s in query.get("status", "").split(",") if s.strip()]
        invalid = [s for s in statuses if s not in STATUSES]
        if invalid:
            raise QueryError(f"Invalid status value(s): {', '.join(invalid)}. Valid values: {', '.join(STATUSES)}")
        sort_by = query.get("sort_by", "created_at").lower()
        if sort_by not in SORT_FIELDS:
            raise QueryError("sort_by must be 'created_at' or 'execution_duration'")
        sort_order = query.get("sort_order", "desc").lower()
        if sort_order not in SORT_ORDERS:
            raise QueryError("sort_order must be 'asc' or 'desc'")
        limit, offset = page_window(query)
        return cls(frozenset(statuses or STATUSES), query.get("workflow_id") or None, sort_by, sort_order, limit,
                   offset)


def pagination(offset: int, limit: int | None, shown: int, total: int) -> dict:
    return {"offset": offset, "limit": limit, "total": total, "has_more": offset + shown < total}


@dataclasses.dataclass(frozen=True)
class _Job:
    item: QueueItem
    status: str
    record: HistoryRecord | None = None


class JobView:
    """A consistent snapshot: the running and pending prompts, then every finished one."""

    def __init__(self, running: list[QueueItem], pending: list[QueueItem], records: list[HistoryRecord]):
        finished = {record.item.prompt_id for record in records}
        # A prompt just finished can still be in the running snapshot: its history record wins.
        self._jobs = [_Job(item, "in_progress") for item in running if item.prompt_id not in finished]
        self._jobs += [_Job(item, "pending") for item in pending if item.prompt_id not in finished]
        self._jobs += [_Job(record.item, finished_status(record), record) for record in records]

    @classmethod
    def of(cls, engine: Engine) -> "JobView":
        running, pending = engine.queue.snapshot()
        return cls(running, pending, engine.history.records())

    def jobs(self, query: JobQuery) -> tuple[list[dict], int]:
        """One page of job summaries, and how many jobs match in all. Only the page is summarized."""
        jobs = [job for job in self._jobs if job.status in query.statuses
                and (query.workflow_id is None or _workflow_id(job.item.extra_data) == query.workflow_id)]
        descending = query.sort_order == "desc"
        # The exact queueing time: create_time (ms) ties for prompts queued together.
        jobs.sort(key=lambda job: job.item.created_ns, reverse=descending)
        if query.sort_by == "execution_duration":  # stable: ties stay in queueing order
            jobs.sort(key=_duration, reverse=descending)
        end = None if query.limit is None else query.offset + query.limit
        return [_summary(job) for job in jobs[query.offset:end]], len(jobs)

    def job(self, prompt_id: str) -> dict | None:
        """One job with its workflow and, once finished, its outputs and execution status."""
        job = self._find(prompt_id)
        if job is None:
            return None
        detail = _summary(job)
        if job.record is not None:
            detail["outputs"] = job.record.entry["outputs"]
            detail["execution_status"] = job.record.entry["status"]
        detail["workflow"] = {"prompt": job.item.prompt, "extra_data": job.item.public_extra_data}
        return detail

    def assets(self, prompt_id: str) -> list[dict] | None:
        """The files a job produced (none until it has finished); None when the job is unknown."""
        job = self._find(prompt_id)
        if job is None:
            return None
        outputs = job.record.entry["outputs"] if job.record is not None else {}
        return [_asset(prompt_id, index, node_id, kind, item)
                for index, (node_id, kind, item) in enumerate(_output_files(outputs))
                if isinstance(item.get("filename"), str)]

    def _find(self, prompt_id: str) -> _Job | None:
        # Finished jobs come last and win, as in the constructor.
        return next((job for job in reversed(self._jobs) if job.item.prompt_id == prompt_id), None)


def finished_status(record: HistoryRecord) -> str:
    status = record.entry["status"]
    if status["status_str"] == "success":
        return "completed"
    interrupted = any(message[0] == "execution_interrupted" for message in status["messages"])
    return "cancelled" if interrupted else "failed"


def _summary(job: _Job) -> dict:
    item = job.item
    summary = {"id": item.prompt_id, "status": job.status, "priority": item.number,
               "create_time": item.created_ns // 1_000_000, "outputs_count": 0, "previewable_outputs_count": 0,
               "workflow_id": _workflow_id(item.extra_data)}
    if job.record is not None:
        start, end, error = _run(job.record)
        summary.update(execution_start_time=start, execution_end_time=end, execution_error=error)
        summary.update(_outputs_summary(job.record.entry["outputs"]))
    return {key: value for key, value in summary.items() if value is not None}


def _run(record: HistoryRecord) -> tuple[int | None, int | None, dict | None]:
    """(start, end, execution_error) from a finished prompt's recorded messages."""
    start = end = error = None
    for kind, data in record.entry["status"]["messages"]:
        if kind == "execution_start":
            start = data.get("timestamp")
        elif kind in END_MESSAGES:
            end = data.get("timestamp")
            error = data if kind == "execution_error" else None
    return start, end, error


def _duration(job: _Job) -> int:
    """Run time in ms; 0 for jobs that have not both started and ended."""
    start, end, _ = _run(job.record) if job.record is not None else (None, None, None)
    return end - start if start and end else 0


def _workflow_id(extra_data: dict) -> str | None:
    pnginfo = extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    workflow_id = workflow.get("id") if isinstance(workflow, dict) else None
    return workflow_id if isinstance(workflow_id, str) else None


# -- outputs ---------------------------------------------------------------------------------------------------

def _output_files(outputs: dict) -> Iterator[tuple[str, str, dict]]:
    """(node id, output kind, item) for every file-like item of a prompt's UI outputs."""
    for node_id, output in outputs.items():
        if not isinstance(output, dict):
            continue
        for kind, items in output.items():
            if kind == "animated" or not isinstance(items, list):  # `animated` is a list of flags
                continue
            for item in items:
                if isinstance(item, dict):
                    yield node_id, kind, item


def _filename(item: dict) -> str:
    name = item.get("filename")
    return name.lower() if isinstance(name, str) else ""


def _previewable(kind: str, item: dict) -> bool:
    media = item.get("format")
    return (kind in PREVIEWABLE_KINDS or (isinstance(media, str) and media.startswith(("video/", "audio/")))
            or _filename(item).endswith(MODEL_EXTENSIONS + TEXT_EXTENSIONS))


def _outputs_summary(outputs: dict) -> dict:
    """outputs_count, previewable_outputs_count and the preview: saved media first, then any media (temp
    previews), then a saved text file, then raw text."""
    files = list(_output_files(outputs))
    candidates = [{**item, "nodeId": node_id, "mediaType": item.get("mediaType", kind)}
                  for node_id, kind, item in files if _previewable(kind, item)]

    def is_text(candidate: dict) -> bool:
        return candidate["mediaType"] == "text" or _filename(candidate).endswith(TEXT_EXTENSIONS)

    media = [c for c in candidates if not is_text(c)]
    ranked = [c for c in media if c.get("type") == "output"] + media + [c for c in candidates if is_text(c)]
    preview = ranked[0] if ranked else _text_preview(outputs)
    return {"outputs_count": len(files), "previewable_outputs_count": len(candidates), "preview_output": preview}


def _text_preview(outputs: dict) -> dict | None:
    for node_id, output in outputs.items():
        texts = output.get("text") if isinstance(output, dict) else None
        for text in texts if isinstance(texts, list) else []:
            if isinstance(text, str):
                preview = {"content": text[:TEXT_PREVIEW_CHARS], "nodeId": node_id, "mediaType": "text"}
                return {**preview, "truncated": True} if len(text) > TEXT_PREVIEW_CHARS else preview
    return None


def _asset(prompt_id: str, index: int, node_id: str, kind: str, item: dict) -> dict:
    ref = {"filename": item["filename"], "subfolder": str(item.get("subfolder", "")),
           "type": str(item.get("type", "output"))}
    return {"id": f"{prompt_id}:{index}", "name": item["filename"], "preview_url": f"/api/view?{urlencode(ref)}",
            **ref, "node_id": node_id, "media_type": kind}
