"""What reading a live run's per-op figures from its own trace costs (issue 10's one path), measured in one run.

For each model, over a few profile() calls (graph off): the median wall time of the whole profile(), the time spent
joining the profiled sessions' traces into one (traces.merge_sessions) and analysing it (trace_import.trace_figures),
and, for comparison, what the earlier path spent building torch.profiler's EventList of each timed session
(prof.events(), which the trace analysis replaced), timed on a profiler session of the same model here.

    python benchmarks/profile_cost.py [--models bert-tiny,bert-base] [--calls 3] [--iters 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager

import torch
from torch.profiler import ProfilerActivity, record_function, schedule
from torch.profiler import profile as torch_profile

import profiler
from profiler.console import format_table
from profiler.measure import session as runner
from profiler.traces import read as traces


@contextmanager
def timing(module, name: str, out: list[float]):
    """Wrap module.name so each call's wall time is appended to out (ms)."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            out.append((time.perf_counter() - t0) * 1e3)

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


def event_list_ms(loaded, repeats: int = 3) -> float:
    """Median time of prof.events() after one session like a timed one (one warm-up step, one recorded step)."""
    out = []
    with torch.inference_mode():
        for _ in range(repeats):
            with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                               schedule=schedule(wait=0, warmup=1, active=1, repeat=1)) as prof:
                for _ in range(2):
                    with record_function("oplens.inference"):
                        loaded()
                    prof.step()
            t0 = time.perf_counter()
            prof.events()
            out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="bert-tiny")
    ap.add_argument("--calls", type=int, default=3, help="profile() calls per model")
    ap.add_argument("--iters", type=int, default=3, help="profiled inferences per call (profile_iters)")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        loaded = profiler.load_model(name)
        config = profiler.ProfileConfig(device="cpu", warmup=2, repeats=5, min_time_s=0.0, profile_iters=args.iters,
                                        graph=False)
        totals, merge, analyse = [], [], []
        with timing(traces, "merge_sessions", merge), timing(runner, "trace_figures", analyse):
            profiler.profile(loaded, config)  # warm-up call: first-use imports and allocations
            merge.clear()
            analyse.clear()
            for _ in range(args.calls):
                t0 = time.perf_counter()
                profiler.profile(loaded, config)
                totals.append((time.perf_counter() - t0) * 1e3)
        total, new = statistics.median(totals), statistics.median(merge) + statistics.median(analyse)
        old = event_list_ms(loaded) * args.iters
        rows.append([name, f"{total:.0f}", f"{statistics.median(merge):.1f}", f"{statistics.median(analyse):.1f}",
                     f"{new / total:.3f}", f"{old:.1f}", f"{new / old:.2f}" if old else "-"])
    print(f"cpu, {torch.get_num_threads()} threads, torch {torch.__version__}; {args.iters} profiled inferences, "
          f"median of {args.calls} profile() calls")
    print(format_table(rows, ["model", "profile ms", "merge ms", "analyse ms", "share of profile",
                              f"old events() ms x{args.iters}", "new / old"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
