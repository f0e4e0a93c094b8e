"""Threads for a shared machine: torch and llama.cpp both spin at their barriers, so a thread per core
stalls them (minutes per step) as soon as another process is busy on one of those cores. Unless the user
set ``model.threads`` / ``ASSISTANT_THREADS``, a distillation stage takes the cores left idle: it measures
how many cores other processes keep busy (a short sample of the system's CPU time) and leaves those."""

from __future__ import annotations

import os
import time

import psutil

from assistant.config import load

_SAMPLE_S = 0.25
_REMEMBER_S = 10.0  # one measurement serves the stages started within this time
_last: tuple[float, int] | None = None


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(sample_s: float = _SAMPLE_S) -> float:
    """Cores kept busy by every process but this one, over ``sample_s`` seconds."""
    me = psutil.Process()
    mine_before, start = sum(me.cpu_times()[:2]), time.monotonic()
    system = psutil.cpu_percent(interval=sample_s) / 100 * (psutil.cpu_count() or 1)
    mine = (sum(me.cpu_times()[:2]) - mine_before) / max(time.monotonic() - start, 1e-3)
    return max(0.0, system - mine)


def idle_share(n_cores: int, busy: float) -> int:
    """Threads to use: the cores others leave idle (a core counts as taken from a third of its time), at least 1."""
    return max(1, min(n_cores, n_cores - int(busy + 2 / 3)))


def choose() -> int:
    """The configured thread count, else the idle cores now (remembered for a few seconds)."""
    global _last
    configured = load().model.threads
    if configured:
        return configured
    now = time.monotonic()
    if _last is None or now - _last[0] > _REMEMBER_S:
        _last = (now, idle_share(cores(), busy_cores()))
    return _last[1]
