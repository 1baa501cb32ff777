"""Training steps on this CPU: the step breakdown, the profiler's cost on a step, and the best training pass.

For each model (default: bert-base at batch 8, sequence 128; resnet18 at batch 32, 224 px), in one process:
1. `profiler train`'s measurement: the median step by phase and by category, and how far the categories' sum is
   from the step's wall time (target: within 2%);
2. the profiler's cost on a step: unprofiled and profiled steps (the light profiler `train` times with) alternated
   ABBA, the median of the per-round ratios (target: at most 5%);
3. the training passes (optimizers.training.search over --passes): each alone, then the winners together, each
   timed side by side (time per sample) with its loss agreement; the best agreeing one is the table's last column.

    python benchmarks/training.py [--models bert-base,resnet18] [--passes fused-optimizer,torch-compile] [--rounds 2]

Quote the ratios with the CPU model and the load average the script prints (measured in one run).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from optimizers import training as tp  # noqa: E402
from profiler import devices  # noqa: E402
from profiler.console import format_table  # noqa: E402
from profiler.measure import train as tr  # noqa: E402
from profiler.models.loading import load_model  # noqa: E402
from profiler.schema import TrainConfig  # noqa: E402

SIZES = {"bert-base": (8, 128), "resnet18": (32, 224), "bert-tiny": (8, 64), "mlp": (64, None), "cnn": (8, 64)}


def overhead(loaded, config: TrainConfig, rounds: int, steps: int) -> tuple[float, float, float]:
    """Profiled / unprofiled step time: (median ratio, lowest, highest round)."""
    stepper = tr._Stepper(tr.parts_for(loaded, config), config, torch.device("cpu"))
    for i in range(2):
        stepper.step(i)

    def timed(profiled: bool, start: int) -> float:
        times = []
        ctx = profile(activities=[ProfilerActivity.CPU]) if profiled else None
        if ctx is not None:
            ctx.__enter__()
        for i in range(steps):
            t0 = time.perf_counter()
            stepper.step(start + i)
            times.append(time.perf_counter() - t0)
            if ctx is not None:
                ctx.step()
        if ctx is not None:
            ctx.__exit__(None, None, None)
        return statistics.median(times)

    ratios = []
    for r in range(rounds):
        order = (False, True, True, False) if r % 2 == 0 else (True, False, False, True)
        got = {False: [], True: []}
        for j, p in enumerate(order):
            got[p].append(timed(p, 10 + 10 * r + j))
        ratios.append(min(got[True]) / min(got[False]))
    return statistics.median(ratios), min(ratios), max(ratios)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="bert-base,resnet18")
    ap.add_argument("--passes", default="fused-optimizer,torch-compile,loader-workers,channels-last")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    print(f"CPU: {devices.cpu_name()} ({', '.join(devices.cpu_features())}), {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; load average before: {os.getloadavg()[0]:.2f}")
    rows, details = [], []
    for name in args.models.split(","):
        batch, seq = SIZES.get(name, (8, None))
        loaded = load_model(name, batch_size=batch, seq_len=seq)
        config = TrainConfig(batch_size=batch, steps=args.steps, warmup=2)
        run = tr.train(loaded, config)
        t = run.training
        worst = max(abs(sum(s.categories.values()) - s.wall_ms) / s.wall_ms for s in t.steps)
        ov, ov_lo, ov_hi = overhead(load_model(name, batch_size=batch, seq_len=seq), config, args.rounds, args.steps)
        names = [p for p in args.passes.split(",") if p]
        results = tp.search(load_model(name, batch_size=batch, seq_len=seq), config, passes=names,
                            rounds=args.rounds, steps=args.steps, curve_steps=4)
        best = next((c for c in results if c.agrees and c.speedup.rounds), None)
        ph = t.phases
        rows.append([f"{name} b{batch}" + (f" s{seq}" if seq else ""), f"{t.wall.median:,.0f}",
                     f"{ph['data']:.0f}/{ph['forward']:.0f}/{ph['backward']:.0f}/{ph['optimizer']:.0f}/"
                     f"{ph['other']:.0f}", f"{worst:.2%}", f"{ov:.3f} ({ov_lo:.3f}-{ov_hi:.3f})",
                     f"{'+'.join(best.passes)} {best.speedup.median:.2f}x ({best.speedup.p10:.2f}-"
                     f"{best.speedup.p90:.2f})" if best else "none faster"])
        details += [f"{name}: {c.verdict}" for c in results]
        print(f"done {name}", file=sys.stderr)
    print(format_table(rows, ["model", "step ms", "data/fwd/bwd/opt/other ms", "|Σ cat - wall|",
                              "profiled/unprofiled", "best training pass (per sample)"], left=(0, 5)))
    print("\n".join(details))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
