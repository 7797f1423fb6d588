"""Timing helpers shared by the benchmark scripts: percentiles of ns timings, number formatting,
a no-GC section for timed loops."""

from __future__ import annotations

import contextlib
import gc
import statistics
import time

perf_ns = time.perf_counter_ns


def pct(values: list[int], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of nanosecond timings, in microseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k] / 1000


def fmt(x: float | None) -> str:
    if x is None or x != x:
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def median(xs: list[float | None]) -> float | None:
    ys = [x for x in xs if x is not None and x == x]
    return statistics.median(ys) if ys else None


@contextlib.contextmanager
def gc_paused():
    """No garbage collection while timing (as ``timeit`` does): a full collection of this process's
    objects takes tens of milliseconds and would land on whichever step happens to trigger it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
