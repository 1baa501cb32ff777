"""Int8 on the real all-MiniLM-L6-v2, judged on sentences the calibration never saw: one table measured in one run.

Rows: fp32, plain dynamic-int8 (every Linear), static-int8 (PT2E, calibrated), and accuracy-int8 at each target
(sensitivity-ordered, the most sensitive layers kept float). Cosines are per sentence embedding against fp32 on the
held-out set (worst and mean), and on the calibration set for contrast: a pass checked on its own calibration inputs
looks better than it is. Each speedup is fp32 against that row timed in alternation (ABBA rounds, same process): the
median of the per-round ratios, with the lowest and highest round.

    python benchmarks/quantization_accuracy.py [--model minilm] [--targets 0.99] [--rounds 3] [--no-static]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# keep this folder off the import path (benchmarks/optimizers.py is named like the package)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

import profiler  # noqa: E402
from optimizers import Tolerance, apply_pipeline  # noqa: E402
from optimizers.calibration import input_sets, outputs_on  # noqa: E402
from optimizers.search import head_to_head  # noqa: E402
from profiler.console import format_table  # noqa: E402
from profiler.devices import cpu_features, cpu_name, resolve_device  # noqa: E402

TARGET_COSINE, TARGET_SPEEDUP = 0.99, 1.3  # the point-4 target


def cosines(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float]:
    """Worst and mean cosine over the rows (sentences)."""
    c = torch.nn.functional.cosine_similarity(reference.double(), candidate.double(), dim=-1)
    return float(c.min()), float(c.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--targets", default="0.99", help="comma-separated min cosines for accuracy-int8")
    ap.add_argument("--rounds", type=int, default=3, help="ABBA rounds per speedup")
    ap.add_argument("--repeats", type=int, default=5, help="timed iterations per profile in a round (at least)")
    ap.add_argument("--no-static", action="store_true", help="skip static-int8 (its export takes a while)")
    a = ap.parse_args()
    t_start = time.time()
    cpu = resolve_device("cpu")
    loaded = profiler.load_model(a.model)
    sets = input_sets(loaded)
    ref_held, ref_calib = outputs_on(loaded, sets.held_out), outputs_on(loaded, sets.calibration)
    config = profiler.ProfileConfig(device="cpu", warmup=2, repeats=a.repeats, min_time_s=0.5, profile_iters=1,
                                    graph=False)
    n_linear = sum(type(m) is torch.nn.Linear for m in loaded.module.modules())
    variants = [("dynamic-int8", ["dynamic-int8"], None)]
    if not a.no_static:
        variants.append(("static-int8", ["static-int8"], None))
    variants += [(f"accuracy-int8 @{t}", ["accuracy-int8"], float(t)) for t in a.targets.split(",")]

    rows = [["fp32", f"{n_linear} of {n_linear} (all)", "1.00000", "1.00000 / 1.00000", "1.00", "-", "-"]]
    load_before = os.getloadavg()[0]
    kept_lines = []
    for label, passes, target in variants:
        print(f"applying {label} ...", file=sys.stderr, flush=True)
        tolerance = Tolerance(min_cosine=target) if target else None
        model, results = apply_pipeline(loaded, passes, cpu, tolerance=tolerance)
        r = results[0]
        if not r.applied:
            rows.append([label, "-", "-", "-", "-", "-", f"n/a: {r.reason[:60]}"])
            continue
        d = r.details
        if "kept_float" in d:
            kept = f"{d['layers_total'] - d['layers_quantized']} of {d['layers_total']} float"
            kept_lines += [f"  {label}: {k['layer']} (sensitivity {k['sensitivity']:.6f}, rank {k['rank']}): {k['why']}"
                           for k in d["kept_float"]]
        elif label == "static-int8":
            kept = "0 (activations static int8 too)"
        else:
            kept = f"0 of {d.get('layers_quantized', n_linear)}"
        worst_c, _ = cosines(ref_calib, outputs_on(model, sets.calibration))
        worst, mean = cosines(ref_held, outputs_on(model, sets.held_out))
        print(f"timing {label} against fp32, {a.rounds} ABBA rounds ...", file=sys.stderr, flush=True)
        ratio, low, high = head_to_head(loaded, model, config, rounds=a.rounds)
        rows.append([label, kept, f"{worst_c:.5f}", f"{worst:.5f} / {mean:.5f}", f"{ratio:.2f} ({low:.2f}-{high:.2f})",
                     f"{r.apply_s:.0f}", "meets" if worst >= TARGET_COSINE and ratio >= TARGET_SPEEDUP else "misses"])
    threads = torch.get_num_threads()
    print(f"\n{a.model}, batch {loaded.batch_size}, seq {loaded.seq_len} (padded real sentences); CPU: {cpu_name()}, "
          f"{threads} threads, torch {torch.__version__}; CPU features: {', '.join(cpu_features()) or 'n/a'}; "
          f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (a shared machine "
          "slows apply times; ABBA timing keeps the ratios fair)")
    print(f"held-out: {sets.held_out_name}\ncalibration: {sets.calibration_name}")
    print(format_table(rows, ["variant", "Linear layers kept float", "calib worst cos", "held-out worst / mean cos",
                              f"speedup vs fp32 (ABBA x{a.rounds})", "apply s",
                              f"target (>= {TARGET_COSINE}, >= {TARGET_SPEEDUP}x)"], left=(0, 1, 6)))
    if kept_lines:
        print("\nlayers kept float, and why:")
        print("\n".join(kept_lines))
    print(f"\ntotal benchmark time {time.time() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
