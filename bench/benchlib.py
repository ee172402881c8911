"""What the standalone benchmark scripts share: percentiles, a summary of
timings in milliseconds, and a one-line description of the machine.

Imported as `benchlib` by the scripts in this directory (Python puts a
script's own directory first on `sys.path`); standard library only.
"""

from __future__ import annotations

import os
import platform
import statistics


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(values_ms: list[float], digits: int = 2) -> dict:
    """Count, p50, p95, min and max of timings in ms."""
    return {
        "runs": len(values_ms),
        "p50_ms": round(statistics.median(values_ms), digits),
        "p95_ms": round(pct(values_ms, 0.95), digits),
        "min_ms": round(min(values_ms), digits),
        "max_ms": round(max(values_ms), digits),
    }


def machine() -> str:
    """`2 vCPU AMD EPYC …, Linux 6.18…`."""
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {cpu}, {platform.system()} {platform.release()}"
