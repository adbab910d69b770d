"""Peak memory of one sync, not of the process's whole life.

A run that syncs several workspaces (and a test session that runs many) would otherwise
report the largest sync so far for every later one. On Linux the kernel's high-water mark
of resident memory is reset before the sync (`/proc/self/clear_refs`, value 5) and read
after it (VmHWM): exact, and free while the sync runs. Elsewhere a thread samples the
resident size every few milliseconds. Resetting the mark also lowers what
`getrusage(...).ru_maxrss` reports afterwards: from then on it is the peak since the reset.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import TracebackType

import psutil

_PROC = Path("/proc/self")
_HIGH_WATER = re.compile(rb"^VmHWM:\s+(\d+) kB$", re.MULTILINE)
_SAMPLE_SECONDS = 0.005
_MB = 1024 * 1024


class PeakMemory:
    """`with PeakMemory() as memory: sync()`, then `memory.peak_mb` (the process's resident
    memory at its highest during the block) and `memory.growth_mb` (how far above the
    resident memory at the block's start that peak was)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._start = 0
        self._peak = 0
        self._exact = False
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self._start = self._process.memory_info().rss
        self._peak = self._start
        self._exact = _reset_high_water()
        if not self._exact:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
        high_water = _high_water() if self._exact else None
        current = self._process.memory_info().rss
        self._peak = max(self._peak, current, high_water or 0)

    @property
    def peak_mb(self) -> float:
        return self._peak / _MB

    @property
    def growth_mb(self) -> float:
        return max(0, self._peak - self._start) / _MB

    def _sample(self) -> None:
        while not self._stop.wait(_SAMPLE_SECONDS):
            self._peak = max(self._peak, self._process.memory_info().rss)


def _reset_high_water() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")
    except OSError:
        return False
    return _high_water() is not None


def _high_water() -> int | None:
    try:
        found = _HIGH_WATER.search((_PROC / "status").read_bytes())
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None
