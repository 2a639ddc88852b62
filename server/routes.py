"""THE route table. Every ComfyUI route is served both bare and under /api (the frontend uses /api/...)."""
from __future__ import annotations

from aiohttp import web

from .handlers import files, history, info, internal, jobs, prompt, queue, userdata, v1

# (method, path, handler), grouped by resource.
ROUTES = [
    # prompts and the queue
    ("GET", "/prompt", prompt.get_prompt),
    ("POST", "/prompt", prompt.post_prompt),
    ("GET", "/queue", queue.get_queue),
    ("POST", "/queue", queue.post_queue),
    ("POST", "/interrupt", queue.post_interrupt),
    ("POST", "/free", queue.post_free),
    # history
    ("GET", "/history", history.get_history),
    ("GET", "/history/{prompt_id}", history.get_history_item),
    ("POST", "/history", history.post_history),
    # jobs: queue and history as one view (the latest frontend)
    ("GET", "/jobs", jobs.get_jobs),
    ("POST", "/jobs/cancel", jobs.cancel_jobs),
    ("GET", "/jobs/{job_id}", jobs.get_job),
    ("GET", "/jobs/{job_id}/assets", jobs.get_job_assets),
    ("POST", "/jobs/{job_id}/cancel", jobs.cancel_job),
    # the programmatic API (the hiddenswitch fork's /api/v1)
    ("GET", "/v1/prompts", v1.get_last_prompt),
    ("POST", "/v1/prompts", v1.post_prompts),
    ("GET", "/v1/prompts/{prompt_id}", v1.get_prompt),
    ("GET", "/v1/images/{digest}", v1.get_image),
    # nodes, models and the system
    ("GET", "/object_info", info.get_object_info),
    ("GET", "/object_info/{node_class}", info.get_object_info_node),
    ("GET", "/embeddings", info.get_embeddings),
    ("GET", "/models", info.get_model_types),
    ("GET", "/models/{folder}", info.get_models),
    ("GET", "/experiment/models", info.get_experiment_models),
    ("GET", "/experiment/models/{folder}", info.get_experiment_models_folder),
    ("GET", "/experiment/models/preview/{folder}/{path_index}/{filename:.*}", files.model_preview),
    ("GET", "/extensions", info.get_extensions),
    ("GET", "/system_stats", info.get_system_stats),
    ("GET", "/features", info.get_features),
    ("GET", "/i18n", info.get_i18n),
    ("GET", "/workflow_templates", info.get_workflow_templates),
    ("GET", "/global_subgraphs", info.get_global_subgraphs),
    # files: input/output/temp images
    ("POST", "/upload/image", files.upload_image),
    ("POST", "/upload/mask", files.upload_mask),
    ("GET", "/view", files.view),
    ("GET", "/view_metadata/{folder_name}", files.view_metadata),
    # users, settings and user data
    ("GET", "/users", userdata.get_users),
    ("POST", "/users", userdata.post_users),
    ("GET", "/settings", userdata.get_settings),
    ("POST", "/settings", userdata.post_settings),
    ("GET", "/settings/{id}", userdata.get_setting),
    ("POST", "/settings/{id}", userdata.post_setting),
    ("GET", "/userdata", userdata.list_userdata),
    ("GET", "/v2/userdata", userdata.list_userdata_v2),
    ("GET", "/userdata/{file}", userdata.get_userdata_file),
    ("POST", "/userdata/{file}", userdata.post_userdata_file),
    ("DELETE", "/userdata/{file}", userdata.delete_userdata_file),
    ("POST", "/userdata/{file}/move/{dest}", userdata.move_userdata_file),
]

# ComfyUI's routes for its own frontend: served under /internal only (no bare or /api form).
INTERNAL_PREFIX = "/internal"
INTERNAL_ROUTES = [
    ("GET", "/logs", internal.get_logs),
    ("GET", "/logs/raw", internal.get_logs_raw),
    ("PATCH", "/logs/subscribe", internal.subscribe_logs),
    ("GET", "/folder_paths", internal.get_folder_paths),
    ("GET", "/files/{directory_type}", internal.get_files),
]


def add_routes(app: web.Application, ws_handler) -> None:
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/api/ws", ws_handler)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    for method, path, handler in INTERNAL_ROUTES:
        app.router.add_route(method, INTERNAL_PREFIX + path, handler)
