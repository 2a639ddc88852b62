"""Runtime configuration: one frozen dataclass, built from argv in `server.__main__` and passed down."""
from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Settings:
    base_directory: Path
    output_directory: Path | None = None
    input_directory: Path | None = None
    temp_directory: Path | None = None
    user_directory: Path | None = None
    extra_model_paths_config: tuple[Path, ...] = ()
    listen: str = "127.0.0.1"
    port: int = 8188
    cpu: bool = False
    vram_mode: str = "normal"  # "high" | "normal" | "low"
    enable_cors_header: str | None = None
    max_upload_size_mb: float = 100.0
    max_queue_size: int = 0  # 0 = unbounded
    preview_method: str = "none"
    multi_user: bool = False
    verbose: bool = False
    disable_custom_nodes: bool = False
    # The web frontend: ComfyUI's `owner/repo@version` (None = the installed comfyui-frontend-package), or a
    # folder that overrides it.
    front_end_version: str | None = None
    front_end_root: Path | None = None
    history_size: int = 10000
    # Queue and history in memory only (lost at exit, as in ComfyUI) instead of the database.
    in_memory_queue: bool = False
    # Run again, after a restart, the prompt that was running when the process died (default: record it failed).
    requeue_interrupted: bool = False
    database: Path | None = None  # default: <base directory>/comfyd.db
    # Which node outputs stay cached between prompts: "classic" (what the latest prompt used), "lru" (the
    # cache_lru_size most recently used), "none" (ComfyUI's --cache-classic / --cache-lru N / --cache-none).
    cache_policy: str = "classic"
    cache_lru_size: int = 0
    # Per websocket client: messages buffered before a client that stops reading is disconnected.
    ws_send_queue: int = 1024

    def directory(self, kind: str) -> Path:
        """The input/output/temp/user folder, honouring the per-folder overrides."""
        override = {
            "input": self.input_directory,
            "output": self.output_directory,
            "temp": self.temp_directory,
            "user": self.user_directory,
        }[kind]
        return Path(override) if override else Path(self.base_directory) / kind

    def database_path(self) -> Path:
        return Path(self.database) if self.database else Path(self.base_directory) / "comfyd.db"

    @property
    def max_upload_size(self) -> int:
        return int(self.max_upload_size_mb * 1024 * 1024)
