"""Peak memory while a model runs: the CUDA allocator's peak on a GPU, the process RSS (sampled) on the CPU."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

from profiler.schema import MemoryStats


class RssSampler:
    """Peak process RSS while inference runs (CPU peak memory); psutil polled from a thread."""

    def __init__(self, period_s: float = 0.005):
        import psutil

        self.proc, self.period, self.peak, self.baseline = psutil.Process(), period_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.period)

    def __enter__(self):
        self.baseline = self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@contextmanager
def memory_tracker(device: torch.device) -> Iterator[MemoryStats]:
    """MemoryStats filled in when the block ends: baseline at entry, peak during it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        stats = MemoryStats(kind="cuda-allocator", baseline_bytes=torch.cuda.memory_allocated(device))
        yield stats
        stats.peak_bytes = torch.cuda.max_memory_allocated(device)
    else:
        with RssSampler() as sampler:
            stats = MemoryStats(kind="process-rss")
            yield stats
        stats.peak_bytes, stats.baseline_bytes = sampler.peak, sampler.baseline
