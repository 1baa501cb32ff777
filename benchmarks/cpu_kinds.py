"""Which pass wins on *this* CPU, in one run, so the same table can be compared across CPU kinds (RESULTS.md keeps a
section per kind): for BERT-base and real MiniLM (batch 8, seq 128), each precision/runtime pass alone with proof
(speedup with its range, held-out cosine, accuracy verdict; emulated passes marked), then the search's answer and
its verdict, then `recommend --apply`'s: the first recommendation after applying and how it stands against the best
single pass measured here.

    python benchmarks/cpu_kinds.py [--models bert-base,minilm] [--budget-s 420] [--passes a,b,...]

Timings are ratios measured in one run, each pass against its own base under the measurement lock. Check the load
first (`uptime`): the machine-load line per row says when other processes took CPU while it timed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# this folder holds benchmarks/optimizers.py, named like the package it measures: keep it off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optimizers  # noqa: E402
import profiler  # noqa: E402
from optimizers import recommend as advice  # noqa: E402
from optimizers.search import search  # noqa: E402
from optimizers.tables import leaderboard_text  # noqa: E402
from profiler import devices, store  # noqa: E402
from profiler.analysis import recommend as rc  # noqa: E402
from profiler.console import format_table  # noqa: E402

PASSES = ("bf16", "autocast", "dynamic-int8", "accuracy-int8", "torch-compile", "onnxruntime", "onnxruntime-int8",
          "openvino")
MODELS = {"bert-base": (8, 128), "minilm": (8, 128)}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def per_pass(loaded, config, names: list[str], runs: str, include_emulated: bool = False,
             min_cosine: float | None = None) -> tuple[list[list[str]], dict[str, float]]:
    """Each pass alone, with proof (at `min_cosine`, default the library's): table rows, and the speedups of those
    within the tolerance."""
    rows, accurate = [], {}
    device = devices.resolve_device(config.device)
    for name in names:
        if name not in optimizers.REGISTRY:
            rows.append([name, "-", "-", "-", "not registered"])
            continue
        p = optimizers.REGISTRY[name]
        if why := p.check(loaded, device):
            rows.append([name, "-", "-", "-", f"n/a: {why[:60]}"])
            continue
        if p.emulated(device) and not include_emulated:  # minutes per pass on BERT-base, and a known slowdown
            rows.append([name, "-", "-", "-", "not measured: emulated here (--include-emulated measures it)"])
            continue
        say(f"  {name} ...")
        try:
            r = optimizers.optimize(loaded, [name], config, runs_dir=runs,
                                    **({"min_cosine": min_cosine} if min_cosine else {}))
        except Exception as exc:  # noqa: BLE001 - one pass failing must not lose the table
            rows.append([name, "-", "-", "-", f"error: {type(exc).__name__}: {str(exc)[:60]}"])
            continue
        res, c, acc = r.passes[0], r.comparison, r.accuracy
        if not res.applied:
            rows.append([name, "-", "-", "-", f"n/a: {res.reason[:60]}"])
            continue
        note = "; ".join(x for x in (p.emulated(device) and "emulated here", "FAILS accuracy" if not acc.passed
                                     else "", "busy" if c.load and c.load.busy else "", c.verdict) if x)
        kept = res.details.get("kept_float")  # onnxruntime-int8: a role; accuracy-int8: a list of layers
        if isinstance(kept, str):
            note += "; float: " + "/".join(kept.split("/")[-3:])
        elif kept:
            note += f"; {len(kept)} Linears float"
        label = f"{name} @{min_cosine:g}" if min_cosine else name
        rows.append([label, f"{c.speedup:.2f} ({c.speedup_low:.2f}-{c.speedup_high:.2f})", f"{acc.cosine:.5f}",
                     "pass" if acc.passed else "FAIL", note])
        if acc.passed:
            accurate[name] = c.speedup
    return rows, accurate


def recommended(spec: str, batch: int, seq: int, runs: str) -> tuple[str, float | None, float, bool]:
    """profile, recommend, apply every recommendation naming passes, rank measured: (first's passes, measured,
    estimate, accuracy passed)."""
    config = profiler.ProfileConfig(device="cpu", batch_size=batch, seq_len=seq, warmup=1, repeats=5,
                                    min_time_s=1.0, profile_iters=1, graph=False)
    run = profiler.profile(profiler.load_model(spec, batch_size=batch, seq_len=seq), config)
    store.save(run, runs)
    diagnosis = advice.why_slow(run, runs)
    recs = diagnosis.recommendations
    for rec in recs:
        if rec.passes:
            say(f"  applying recommendation: {'+'.join(rec.passes)}")
            advice.apply(rec, run, runs)
    recs = rc.rank_measured(recs)
    if not recs:
        return "no rule fired", None, 1.0, False
    top = recs[0]
    return "+".join(top.passes) or top.title, top.measured_speedup, top.estimated_speedup, rc.passed(top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--budget-s", type=float, default=420, help="time budget of each search (0 skips it)")
    ap.add_argument("--passes", default=",".join(PASSES))
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--include-emulated", action="store_true", help="also measure passes this CPU emulates (slow)")
    ap.add_argument("--int8-at", type=float, default=0.99, help="also prove the int8 passes at this cosine (0: skip)")
    ap.add_argument("--parts", default="passes,search,recommend", help="which parts to run (comma-separated)")
    a = ap.parse_args()
    t0 = time.time()
    cpu = devices.device_info(devices.resolve_device("cpu"))
    summary = []
    for spec in a.models.split(","):
        batch, seq = MODELS.get(spec, (8, 128))
        runs = tempfile.mkdtemp(prefix="oplens-cpu-kinds-")  # a fresh store: no earlier pairs scale the estimates
        loaded = profiler.load_model(spec, batch_size=batch, seq_len=seq)
        config = profiler.ProfileConfig(device="cpu", warmup=2, repeats=a.repeats, min_time_s=2.0, profile_iters=1,
                                        graph=False)
        parts = a.parts.split(",")
        rows, accurate = [], {}
        if "passes" in parts:
            say(f"{spec}: each pass alone")
            rows, accurate = per_pass(loaded, config, a.passes.split(","), runs, a.include_emulated)
        if a.int8_at and "passes" in parts:  # the int8 passes again at a looser tolerance (MiniLM's target: 0.99)
            more, _ = per_pass(loaded, config, [n for n in a.passes.split(",") if "int8" in n], runs,
                               a.include_emulated, a.int8_at)
            rows += more
        if rows:
            print(f"\n{spec}, batch {batch}, seq {seq}: each pass alone, against its own fp32 base")
            print(format_table(rows, ["pass", "speedup (range)", "cosine", "accuracy", "notes"], left=(0, 4)))
        best_single = max(accurate.items(), key=lambda kv: kv[1]) if accurate else ("none", 1.0)
        line = [spec, f"{best_single[0]} {best_single[1]:.2f}x"]
        if a.budget_s > 0 and "search" in parts:
            say(f"{spec}: search ({a.budget_s:.0f} s)")
            result = search(loaded, config, budget_s=a.budget_s, progress=lambda s, f: say(f"  {s}"),
                            include_emulated=a.include_emulated)
            b = result.best
            line.append(f"{'+'.join(b.passes) or 'none'} {b.speedup:.2f}x ({b.speedup_low:.2f}-{b.speedup_high:.2f}),"
                        f" {result.verdict}")
            print(f"\n{spec} search, {a.budget_s:.0f} s: {result.verdict_text} (stopped: {result.stopped})")
            print("\n".join(leaderboard_text(result).splitlines()[:12]))
        else:
            line.append("-")
        if "recommend" not in parts:
            summary.append(line + ["-", "-"])
            continue
        say(f"{spec}: recommend --apply")
        first, measured, estimate, ok = recommended(spec, batch, seq, runs)
        within = (f"{measured / best_single[1]:.0%} of the best single pass" if measured and best_single[1] else "-")
        line += [f"{first}: {'-' if measured is None else f'{measured:.2f}x'} (est. {estimate:.2f}x, "
                 f"{'accurate' if ok else 'NOT accurate'})", within]
        summary.append(line)
        print(" | ".join(line), flush=True)  # kept even if a later model is interrupted
    print(f"\nCPU: {cpu.name}, {cpu.threads} threads, torch {cpu.torch}; {devices.capability_line(cpu)}")
    print(format_table(summary, ["model", "best single pass (accurate)", "search", "recommend --apply, first",
                                 "first vs best single"], left=(0, 1, 2, 3)))
    say(f"total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
