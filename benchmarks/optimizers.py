"""Every optimization pass alone on one model, then the automatic search: one table measured in one run.

Each pass is measured back to back with its own unoptimized base (same config, under the measurement lock), so the
machine's slow drift does not favour the passes measured early. Speedups are ratios of medians with the range their
95% intervals allow; apply time (compile, calibration) is separate. Which pass wins depends on the CPU: the table
starts with the CPU model and its features.

    python benchmarks/optimizers.py [--model bert-base] [--budget-s 900] [--passes a,b,...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# this file is named like the package it measures: keep its own folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import optimizers  # noqa: E402
import profiler  # noqa: E402
from optimizers.base import applicability  # noqa: E402
from optimizers.search import head_to_head_line, search  # noqa: E402
from optimizers.tables import leaderboard_text  # noqa: E402
from profiler.console import format_table  # noqa: E402
from profiler.devices import cpu_features, cpu_name, resolve_device  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bert-base")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-s", type=float, default=900, help="time budget of the search (0 skips it)")
    ap.add_argument("--passes", help="comma-separated subset (default: every pass that applies)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    t_start = time.time()
    loaded = profiler.load_model(a.model)
    device = resolve_device(a.device)
    config = profiler.ProfileConfig(device=a.device, warmup=2, repeats=a.repeats, min_time_s=3.0, profile_iters=1,
                                    graph=False)
    names = a.passes.split(",") if a.passes else list(optimizers.REGISTRY)
    rows, singles = [], []
    why_not = {row["pass"]: row["why not"] for row in applicability(loaded, device)}  # as the Optimize page checks
    for name in names:
        optimizers.get(name)  # an unknown name fails here, with the known ones listed
        reason = why_not[name]
        if reason:
            rows.append([name, "-", "-", "-", "-", "-", f"n/a: {reason[:70]}"])
            continue
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        try:
            r = optimizers.optimize(loaded, [name], config)
        except Exception as exc:  # noqa: BLE001 - one pass failing must not lose the table
            rows.append([name, "-", "-", "-", "-", "-", f"error: {type(exc).__name__}: {str(exc)[:60]}"])
            continue
        p, c, acc = r.passes[0], r.comparison, r.accuracy
        if not p.applied:
            rows.append([name, "-", "-", "-", "-", "-", f"n/a: {p.reason[:70]}"])
            continue
        top1 = f"{acc.top1_agreement:.3f}" if acc.top1_agreement is not None else "-"
        rows.append([name, f"{c.base_median_ms:.1f}", f"{c.new_median_ms:.1f}",
                     f"{c.speedup:.2f} ({c.speedup_low:.2f}-{c.speedup_high:.2f})", f"{acc.cosine:.5f} / {top1}",
                     f"{p.apply_s:.1f}", "ok" if acc.passed else "FAILS accuracy"])
        if acc.passed:
            singles.append((c.speedup, name, c.new_median_ms))
    d = profiler.profile(loaded, profiler.ProfileConfig(device=a.device, warmup=1, repeats=1, min_time_s=0,
                                                        profile_iters=1, graph=False)).device
    print(f"\n{a.model}, batch {loaded.batch_size}, seq {loaded.seq_len}; {d.kind}: {d.name} ({cpu_name()}), "
          f"{d.threads} threads, torch {d.torch}; CPU features: {', '.join(cpu_features()) or 'n/a'}")
    print(format_table(rows, ["pass", "base ms", "pass ms", "speedup (range)", "cosine / top-1", "apply s", "verdict"],
                       left=(0, 6)))
    best = max(singles) if singles else None
    if best:
        print(f"\nbest single pass within tolerance: {best[1]} {best[0]:.2f}x ({best[2]:.1f} ms)")
    if a.budget_s > 0:
        print(f"searching for {a.budget_s:.0f} s ...", file=sys.stderr, flush=True)
        result = search(loaded, config, budget_s=a.budget_s, beam=2,
                        progress=lambda s, f: print(f"  {s}", file=sys.stderr, flush=True))
        print(f"\nsearch leaderboard (base {result.base_median_ms:.1f} ms; stopped: {result.stopped}; "
              f"{result.elapsed_s:.0f} s)")
        print(leaderboard_text(result))
        if result.best and result.best.passes:
            b = result.best
            # compare with the best single pass as timed inside the search: the same stretch of machine time
            singles_in_search = [c for c in result.leaderboard if c.status == "ok" and len(c.passes) == 1]
            ref = min(singles_in_search, key=lambda c: c.median_ms) if singles_in_search else None
            vs = (f"; {ref.median_ms / b.median_ms:.2f}x the best single pass timed in the same search "
                  f"({'+'.join(ref.passes)} {ref.median_ms:.1f} ms)") if ref else ""
            print(f"search result: {'+'.join(b.passes)} {b.speedup:.2f}x ({b.median_ms:.1f} ms){vs}")
            if result.vs_best_single:
                print("head-to-head: " + head_to_head_line(result.vs_best_single.to_dict()))
    print(f"\ntotal benchmark time {time.time() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
