"""The machine a benchmark ran on, for its report (read by ``make bench``, the export benchmark and the GPU check)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor())
