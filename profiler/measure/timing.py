"""Honest latency: warm-up, adaptive repeats (a minimum count AND a minimum time), raw samples, robust statistics."""
from __future__ import annotations

import time
from typing import Callable

from profiler.schema import LatencyStats
from profiler.stats import summarize


def measure(fn: Callable[[list[float]], None], warmup: int, repeats: int, min_time_s: float, max_time_s: float,
            tick: Callable[[float], None] | None = None) -> LatencyStats:
    """Call fn(samples) until at least `repeats` samples AND `min_time_s` seconds are spent (capped by max_time_s).

    fn appends one sample in ms per call (so CUDA timing stays inside it). `tick(fraction)` reports progress and may
    raise to cancel.
    """
    warm: list[float] = []
    for i in range(warmup):
        fn(warm)
        if tick:
            tick((i + 1) / max(1, warmup + repeats))
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        fn(samples)
        elapsed = time.perf_counter() - start
        if tick:
            done = min(1.0, min(len(samples) / max(1, repeats), elapsed / max(min_time_s, 1e-9)))
            tick((warmup + done * repeats) / max(1, warmup + repeats))
        if len(samples) >= repeats and elapsed >= min_time_s:
            break
        if elapsed >= max_time_s and len(samples) >= 3:
            break
    return summarize(samples, warm)
