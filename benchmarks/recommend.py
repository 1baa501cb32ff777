"""Recommendations that prove themselves, measured in one run: for bert-base (fp32, batch 8, seq 128), cnn and mlp
(batch 1), profile, recommend, apply the recommendations that name passes (with proof) and print estimated vs
measured speedups. `python benchmarks/recommend.py [--top N] [--runs-dir DIR]` (minutes: bert-base dominates)."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import profiler  # noqa: E402
from optimizers import recommend as advice  # noqa: E402
from profiler.analysis import roofline as rl  # noqa: E402
from profiler.console import format_table  # noqa: E402
from profiler.measure import peaks as peaks_mod  # noqa: E402

MODELS = [("bert-base", 8, 128), ("cnn", 1, 224), ("mlp", 1, 128), ("mlp-tiny", 1, 128)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--top", type=int, default=2, help="recommendations applied per model")
    ap.add_argument("--runs-dir", default=None, help="default: a fresh temporary store (history starts empty)")
    ap.add_argument("--models", default=",".join(m for m, _, _ in MODELS))
    a = ap.parse_args()
    runs = a.runs_dir or tempfile.mkdtemp(prefix="oplens-recommend-")
    rows = []
    for spec, batch, seq in MODELS:
        if spec not in a.models.split(","):
            continue
        config = profiler.ProfileConfig(device="cpu", batch_size=batch, seq_len=seq, warmup=1, repeats=5,
                                        min_time_s=0.0, profile_iters=1, graph=False)
        run = profiler.profile(profiler.load_model(spec, batch_size=batch, seq_len=seq), config)
        profiler.store.save(run, runs)
        roof = rl.roofline(run, peaks_mod.for_run(run))
        print(f"{spec}: median {run.latency.median_ms:.3g} ms, floor at peak {roof.floor_ms:.3g} ms, "
              f"verdict {roof.verdict} ({', '.join(f'{k} {v:.3g} ms' for k, v in roof.time_by_bound.items())})",
              flush=True)
        recs = advice.why_slow(run, runs).recommendations
        applied = 0
        for i, rec in enumerate(recs, 1):
            if rec.passes and applied < a.top:
                try:
                    advice.apply(rec, run, runs, warmup=1, repeats=5)
                except profiler.schema.OpLensError as exc:
                    rec.evidence += f" [apply failed: {exc}]"
                applied += 1
            acc = rec.measured_accuracy or {}
            rows.append([spec, str(i), rec.title[:48], "+".join(rec.passes) or "-", f"{rec.estimated_speedup:.2f}x",
                         "-" if rec.measured_speedup is None else f"{rec.measured_speedup:.2f}x",
                         "-" if acc.get("cosine") is None else f"{acc['cosine']:.5f}"])
            print("  " + " | ".join(rows[-1][1:]), flush=True)
    print()
    print(f"device: {run.device.name}, {run.device.threads} threads, torch {run.device.torch}; store {runs}")
    print(format_table(rows, ["model", "#", "recommendation", "passes", "estimated", "measured", "cosine"],
                       left=(0, 2, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
