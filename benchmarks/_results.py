"""Shared by the benchmark scripts: the machine line and writing one marked section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path


def machine_line() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = f", 1-min load average {os.getloadavg()[0]:.1f} at the end (a shared machine)"
    except OSError:
        load = ""
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {time.strftime('%Y-%m-%d')}{load}"
    )


def write_section(path: Path, key: str, title: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- key:start -->`` and ``<!-- key:end -->``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n## {title}\n\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n\nWritten by the scripts in `benchmarks/`.\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
