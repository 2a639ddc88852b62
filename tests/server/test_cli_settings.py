"""ComfyUI's command-line flags map onto Settings, and the folder overrides are honoured end to end."""
from __future__ import annotations

from pathlib import Path

from engine import Settings
from engine.history import History
from engine.types import ExecutionResult, QueueItem
from server.__main__ import parse_args
from server.app import build_registry, create_app
from tests.conftest import run_prompt, wait_history


def test_flags_parse_into_settings(tmp_path):
    s = parse_args(["--listen", "--port", "9000", "--cpu", "--base-directory", str(tmp_path),
                    "--output-directory", str(tmp_path / "out"), "--input-directory", str(tmp_path / "in"),
                    "--extra-model-paths-config", "a.yaml", "b.yaml", "--enable-cors-header",
                    "--max-upload-size", "5", "--lowvram", "--verbose", "--max-queue-size", "3",
                    "--preview-method", "latent2rgb"])
    assert s.listen == "0.0.0.0" and s.port == 9000 and s.cpu and s.base_directory == tmp_path.resolve()
    assert s.directory("output") == tmp_path / "out" and s.directory("input") == tmp_path / "in"
    assert s.directory("temp") == tmp_path.resolve() / "temp"
    assert s.extra_model_paths_config == (Path("a.yaml"), Path("b.yaml"))
    assert s.enable_cors_header == "*" and s.max_upload_size == 5 * 1024 * 1024
    assert s.vram_mode == "low" and s.verbose and s.max_queue_size == 3 and s.preview_method == "latent2rgb"
    defaults = parse_args([])
    assert defaults.listen == "127.0.0.1" and defaults.port == 8188 and defaults.enable_cors_header is None


async def test_output_directory_override_is_where_images_go(aiohttp_client, tmp_path):
    settings = Settings(base_directory=tmp_path / "base", output_directory=tmp_path / "elsewhere")
    client = await aiohttp_client(create_app(settings, build_registry(settings)))
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    prompt_id, _ = await run_prompt(client, prompt)
    await wait_history(client, prompt_id)
    assert (tmp_path / "elsewhere" / "x_00001_.png").is_file()
    view = await client.get("/view", params={"filename": "x_00001_.png", "type": "output"})
    assert view.status == 200


async def test_cors_header_mode_answers_preflight(aiohttp_client, tmp_path):
    settings = Settings(base_directory=tmp_path, enable_cors_header="https://app.example")
    client = await aiohttp_client(create_app(settings, build_registry(settings)))
    resp = await client.options("/prompt")
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    resp = await client.get("/queue", headers={"Origin": "https://app.example"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_history_is_bounded_oldest_first():
    history = History(max_size=3)
    for i in range(5):
        item = QueueItem(i, f"p{i}", {}, {}, [])
        history.record(item, ExecutionResult("success", True, [], {}, {}))
    assert list(history.page()) == ["p2", "p3", "p4"] and len(history) == 3
