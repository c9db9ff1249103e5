"""Is something else using the CPU? Measured before profiling, because a busy machine ruins latency tables.

On a 2-core machine one other busy process made 2-thread onnxruntime several times slower and blurred
the per-block savings until a 0.78 budget looked unreachable. The check samples /proc/stat over a short
interval while this process sleeps, so the busy time it sees belongs to other processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_PROC_STAT = Path("/proc/stat")


def _cpu_times(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from the aggregate 'cpu' line of /proc/stat."""
    fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_cores(before: str, after: str, cores: int) -> float:
    """Cores' worth of CPU used between two /proc/stat snapshots."""
    busy0, total0 = _cpu_times(before)
    busy1, total1 = _cpu_times(after)
    return cores * (busy1 - busy0) / max(total1 - total0, 1)


def busy_machine_warning(threads: int, interval_s: float = 0.5) -> str | None:
    """A warning when other processes use CPU the profiler's threads need; None if idle or unknown."""
    if not _PROC_STAT.exists():
        return None
    cores = os.cpu_count() or 1
    before = _PROC_STAT.read_text()
    time.sleep(interval_s)
    used = busy_cores(before, _PROC_STAT.read_text(), cores)
    return load_warning(used, threads, cores)


def load_warning(used: float, threads: int, cores: int) -> str | None:
    if used < 0.5 or used + threads <= cores + 0.25:
        return None
    return (f"warning: other processes are using about {used:.1f} of this machine's {cores} cores while the profiler "
            f"wants {threads} threads: latencies will be inflated and per-block savings blurred. Profile when the "
            f"machine is idle, or with --threads {max(1, cores - round(used))}.")
