"""The compute device (CUDA when present unless --cpu) and the figures /system_stats reports."""
from __future__ import annotations

import os
import platform
import sys


def _ram() -> tuple[int, int]:
    """(total, available) RAM in bytes, from /proc/meminfo or sysconf."""
    try:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                fields[key] = int(value.split()[0]) * 1024
        return fields["MemTotal"], fields.get("MemAvailable", fields["MemFree"])
    except (OSError, KeyError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def select_device(force_cpu: bool):
    import torch

    if not force_cpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def device_stats(device) -> dict:
    import torch

    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        stats = torch.cuda.memory_stats(device)
        reserved = stats.get("reserved_bytes.all.current", 0)
        active = stats.get("active_bytes.all.current", 0)
        return {
            "name": f"{device} {torch.cuda.get_device_name(device)}",
            "type": "cuda",
            "index": device.index,
            "vram_total": total,
            "vram_free": free + (reserved - active),
            "torch_vram_total": reserved,
            "torch_vram_free": reserved - active,
        }
    total, free = _ram()
    return {"name": "cpu", "type": "cpu", "index": None, "vram_total": total, "vram_free": free,
            "torch_vram_total": total, "torch_vram_free": free}


def system_info(argv: list[str]) -> dict:
    import torch

    total, free = _ram()
    return {
        "os": os.name,
        "ram_total": total,
        "ram_free": free,
        "python_version": sys.version,
        "pytorch_version": torch.__version__,
        "embedded_python": os.path.split(os.path.split(sys.executable)[0])[1] == "python_embeded",
        "argv": list(argv),
        "platform": platform.platform(),
    }
