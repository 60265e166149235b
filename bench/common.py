"""Shared helpers for benchmarks: timing a command, summarising, writing results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], subprocess.CompletedProcess[str]]) -> tuple[float, subprocess.CompletedProcess[str]]:
    begin = time.perf_counter()
    result = fn()
    return time.perf_counter() - begin, result


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
        "n": len(samples),
    }


def machine() -> dict[str, Any]:
    import salt.version

    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "salt": salt.version.__version__,
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    payload = {"benchmark": name, "when": stamp, "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def exit_on_sigterm() -> None:
    """Turn SIGTERM (and SIGINT, which Salt's client code may swallow) into SystemExit.

    A benchmark owns labs of real daemons; exiting through ``with``/``finally`` tears them
    down instead of leaving them running.
    """
    import signal
    import sys

    def handler(signum: int, _frame: Any) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
