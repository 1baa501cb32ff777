"""GPU check of the one path (issue 10): a live CUDA run's per-op, transfer and kernel figures are the import's
analysis of its own trace (several profiled inferences joined into one trace). Prints the worst relative difference
between the live figures and the import of the saved trace (divided by the recorded steps), and the transfers.
Usage (on a GPU machine): OPLENS_RUNS_DIR=/tmp/runs python benchmarks/gpu_one_path.py"""
from __future__ import annotations

import sys

import profiler
from profiler.schema import Peaks
from profiler.traces.importer import import_trace


def check(spec: str, batch: int, seq: int) -> float:
    run = profiler.profile(profiler.load_model(spec, batch_size=batch, seq_len=seq),
                           profiler.ProfileConfig(device="cuda", warmup=2, repeats=5, min_time_s=0.0, profile_iters=3))
    profiler.store.save(run)
    steps = run.config.profile_iters
    imported = import_trace(run.trace_path)
    by = {o.name: o for o in imported.ops}
    worst = 0.0
    for o in run.ops:
        i = by[o.name]
        for f in ("calls", "exec_ms", "trans_ms", "device_ms", "total_ms", "host_ms"):
            a, b = getattr(o, f), getattr(i, f) / steps
            if max(abs(a), abs(b)) > 0:
                worst = max(worst, abs(a - b) / max(abs(a), abs(b)))
    print(f"{spec}: {len(run.ops)} ops, worst relative difference live vs import/steps {worst:.2e}; "
          f"gpu steps {run.gpu.steps if run.gpu else None} (import: {imported.gpu.steps if imported.gpu else None}); "
          f"kernels {len(run.kernels)}; coverage {run.totals.coverage:.2f}")
    print("  transfers per inference", [(t.direction, t.calls, t.bytes, round(t.time_ms, 4)) for t in run.transfers])
    print("  top ops", [(o.name, o.calls, round(o.exec_ms, 4), round(o.trans_ms, 4)) for o in run.ops[:5]])
    return worst


def main() -> int:
    worst = max(check("bert-tiny", 2, 16), check("bert-base", 8, 128))
    peaks = Peaks(device="cuda", name="placeholder", source="given", fp32_gflops=1e4, mem_bw_gbs=1e3)  # no roofs here
    g = profiler.generate(profiler.load_model("llama-tiny", batch_size=2, seq_len=8),
                          profiler.GenerateConfig(device="cuda", prompt_len=8, new_tokens=5, warmup=1, repeats=3,
                                                  min_time_s=0.0),
                          peaks=peaks)
    print("generate llama-tiny phases", [(p.name, len(p.ops), round(p.exec_ms, 4)) for p in g.generation.phases],
          "transfers", [(t.direction, t.calls, t.bytes) for t in g.transfers], "kernels", len(g.kernels))
    print("ONE PATH OK" if worst <= 0.01 else "ONE PATH DIFFERS")
    return 0 if worst <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
