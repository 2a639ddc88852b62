"""GET /jobs, /jobs/{job_id}, /jobs/{job_id}/assets; POST /jobs/{job_id}/cancel, /jobs/cancel: the job view of
the latest frontend (`server.jobs.JobView`). Refusals carry upstream's bare `{"error": message}` body."""
from __future__ import annotations

import json

from aiohttp import web

from ..jobs import JobQuery, JobView, QueryError, page_window, pagination
from ..keys import ENGINE


async def get_jobs(request: web.Request) -> web.Response:
    try:
        query = JobQuery.parse(request.query)
    except QueryError as ex:
        return _error(str(ex), 400)
    jobs, total = JobView.of(request.app[ENGINE]).jobs(query)
    return web.json_response({"jobs": jobs, "pagination": pagination(query.offset, query.limit, len(jobs), total)})


async def get_job(request: web.Request) -> web.Response:
    job = JobView.of(request.app[ENGINE]).job(request.match_info["job_id"])
    return web.json_response(job) if job is not None else _error("Job not found", 404)


async def get_job_assets(request: web.Request) -> web.Response:
    try:
        limit, offset = page_window(request.query)
    except QueryError as ex:
        return _error(str(ex), 400)
    assets = JobView.of(request.app[ENGINE]).assets(request.match_info["job_id"])
    if assets is None:
        return _error("Job not found", 404)
    shown = assets[offset:None if limit is None else offset + limit]
    return web.json_response({"assets": shown, "pagination": pagination(offset, limit, len(shown), len(assets))})


async def cancel_job(request: web.Request) -> web.Response:
    """Dequeue a pending job, interrupt a running one; a finished or unknown job is a no-op, not an error."""
    return web.json_response({"cancelled": request.app[ENGINE].cancel(request.match_info["job_id"])})


async def cancel_jobs(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except (UnicodeDecodeError, ValueError):
        return _error("Request body must be valid JSON", 400)
    job_ids = body.get("job_ids") if isinstance(body, dict) else None
    if not isinstance(job_ids, list):
        return _error("job_ids must be a list", 400)
    invalid = [job_id if isinstance(job_id, str) else repr(job_id) for job_id in job_ids
               if not isinstance(job_id, str) or not job_id]
    if invalid:
        return web.json_response({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, status=400)
    engine = request.app[ENGINE]
    # Every id is tried: one that already finished must not keep the others running.
    cancelled = [engine.cancel(job_id) for job_id in job_ids]
    return web.json_response({"cancelled": any(cancelled)})


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)
