"""`comfyd` / `python -m server`: parse ComfyUI's common flags into Settings and serve."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aiohttp import web

from engine import Settings, StoreError
from engine.context import PREVIEW_METHODS

from .frontend import CUSTOM_VERSIONS, FrontendError, version_spec


def parse_args(argv: list[str]) -> Settings:
    p = argparse.ArgumentParser(prog="comfyd", description="A ComfyUI-compatible server.")
    p.add_argument("--listen", nargs="?", const="0.0.0.0", default="127.0.0.1",
                   help="address to listen on (bare flag: all interfaces)")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--cpu", action="store_true", help="run everything on the CPU")
    p.add_argument("--base-directory", type=Path, default=None,
                   help="root of models/, input/, output/, temp/, user/, custom_nodes/ (default: the current folder)")
    p.add_argument("--output-directory", type=Path)
    p.add_argument("--input-directory", type=Path)
    p.add_argument("--temp-directory", type=Path)
    p.add_argument("--user-directory", type=Path)
    p.add_argument("--extra-model-paths-config", type=Path, nargs="+", action="append", default=[],
                   help="ComfyUI extra_model_paths.yaml file(s)")
    p.add_argument("--enable-cors-header", nargs="?", const="*", default=None)
    p.add_argument("--max-upload-size", type=float, default=100, help="in MB")
    p.add_argument("--max-queue-size", type=int, default=0, help="0 = unbounded")
    p.add_argument("--preview-method", choices=PREVIEW_METHODS, default="none")
    vram = p.add_mutually_exclusive_group()
    vram.add_argument("--highvram", action="store_const", dest="vram_mode", const="high")
    vram.add_argument("--normalvram", action="store_const", dest="vram_mode", const="normal")
    vram.add_argument("--lowvram", action="store_const", dest="vram_mode", const="low")
    caching = p.add_mutually_exclusive_group()
    caching.add_argument("--cache-classic", action="store_true", help="keep the outputs the last prompt used")
    caching.add_argument("--cache-lru", type=int, default=0, metavar="N", help="keep the N most recently used outputs")
    caching.add_argument("--cache-none", action="store_true", help="keep no outputs between prompts")
    p.add_argument("--multi-user", action="store_true")
    p.add_argument("--disable-all-custom-nodes", action="store_true")
    p.add_argument("--front-end-version", type=version_spec, default=None, metavar="OWNER/REPO@VERSION",
                   help="serve this frontend release, e.g. Comfy-Org/ComfyUI_frontend@1.27.10: the installed "
                        f"package if it is that version, else <base>/{CUSTOM_VERSIONS}/<owner>_<repo>/<version>/ "
                        "(comfyd does not download releases; default: the installed comfyui-frontend-package)")
    p.add_argument("--front-end-root", type=Path, default=None, help="serve the web app from this folder")
    p.add_argument("--database", type=Path, default=None,
                   help="the SQLite file keeping the queue and history (default: <base directory>/comfyd.db)")
    p.add_argument("--max-history", type=int, default=10000, metavar="N",
                   help="finished prompts kept in the history (older ones are forgotten; their files stay)")
    p.add_argument("--requeue-interrupted", action="store_true",
                   help="after a restart, run again the prompt that was running when the process ended")
    p.add_argument("--in-memory-queue", action="store_true",
                   help="keep the queue and history in memory only: lost at exit, as in ComfyUI")
    p.add_argument("--verbose", nargs="?", const="DEBUG", default=None,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    args = p.parse_args(argv)
    base = (args.base_directory or Path.cwd()).resolve()
    return Settings(
        base_directory=base,
        output_directory=args.output_directory,
        input_directory=args.input_directory,
        temp_directory=args.temp_directory,
        user_directory=args.user_directory,
        extra_model_paths_config=tuple(path for group in args.extra_model_paths_config for path in group),
        listen=args.listen,
        port=args.port,
        cpu=args.cpu,
        vram_mode=args.vram_mode or "normal",
        enable_cors_header=args.enable_cors_header,
        max_upload_size_mb=args.max_upload_size,
        max_queue_size=args.max_queue_size,
        preview_method=args.preview_method,
        multi_user=args.multi_user,
        verbose=args.verbose is not None,
        disable_custom_nodes=args.disable_all_custom_nodes,
        front_end_version=args.front_end_version,
        front_end_root=args.front_end_root,
        cache_policy="none" if args.cache_none else "lru" if args.cache_lru > 0 else "classic",
        cache_lru_size=args.cache_lru,
        in_memory_queue=args.in_memory_queue,
        requeue_interrupted=args.requeue_interrupted,
        history_size=args.max_history,
        database=args.database,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    settings = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if settings.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .app import create_app

    try:
        app = create_app(settings, argv=["comfyd", *argv])
    except (FrontendError, StoreError) as ex:
        sys.exit(f"comfyd: {ex}")
    hosts = [h.strip() for h in settings.listen.split(",") if h.strip()]
    print(f"comfyd: serving http://{hosts[0]}:{settings.port}", flush=True)
    web.run_app(app, host=hosts, port=settings.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
