"""Profiler overhead and coverage, measured in one run.

For each model: unprofiled and profiled medians from interleaved pairs (so drift in machine speed hits both alike),
their ratio, and coverage (sum of op self times / wall time of the profiled iterations).

    python benchmarks/profiler_overhead.py [--pairs 7] [--models mlp,resnet18,bert-base]
"""
from __future__ import annotations

import argparse
import sys

import profiler
from profiler.console import format_table
from profiler.devices import cpu_features, cpu_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,resnet18,bert-base")
    ap.add_argument("--pairs", type=int, default=7, help="interleaved profiled/unprofiled pairs per model")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        loaded = profiler.load_model(name)
        config = profiler.ProfileConfig(device=args.device, warmup=3, repeats=10, min_time_s=2.0,
                                        profile_iters=args.pairs, graph=False)
        run = profiler.profile(loaded, config)
        rows.append([name, f"{loaded.batch_size}x{loaded.seq_len}", f"{run.paired_latency.median_ms:.2f}",
                     f"{run.profiled_latency.median_ms:.2f}", f"{run.overhead_ratio:.3f}", f"{run.totals.coverage:.3f}",
                     f"{run.latency.median_ms:.2f}", run.latency.noise])
        print(f"done {name}", file=sys.stderr)
    dev = run.device
    print(f"device: {dev.kind} {dev.name}, {dev.threads} threads, torch {dev.torch}, CPU features: "
          f"{','.join(cpu_features()) or 'n/a'} ({cpu_name()})")
    print(format_table(rows, ["model", "batch x seq", "unprofiled ms", "profiled ms", "overhead", "coverage",
                              "timing median ms", "noise"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
