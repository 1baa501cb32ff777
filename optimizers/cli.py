"""python -m optimizers: list passes, apply a pipeline with proof, search for the best pipeline."""
from __future__ import annotations

import argparse
import json
import sys

from profiler import OpLensError, ProfileCancelled, ProfileConfig, load_model
from profiler.cli import _Parser, _positive, _progress_bar, format_table

from .base import REGISTRY, UnknownPassError, get
from .optimize import optimize
from .search import head_to_head_line, search
from .validate import MIN_COSINE, MIN_TOP1


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m optimizers", description="Apply optimization passes to a model and prove the result.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ls = sub.add_parser("list", help="list the passes")
    ls.add_argument("--json", action="store_true")

    def common(sp):
        sp.add_argument("model")
        sp.add_argument("--device", default="auto")
        sp.add_argument("--batch-size", type=_positive(), default=None)
        sp.add_argument("--seq-len", type=_positive(), default=None)
        sp.add_argument("--warmup", type=_positive(minimum=0), default=3)
        sp.add_argument("--repeats", type=_positive(), default=10)
        sp.add_argument("--min-time", type=_positive(float, 0), default=1.0)
        sp.add_argument("--min-cosine", type=float, default=MIN_COSINE)
        sp.add_argument("--min-top1", type=float, default=MIN_TOP1)
        sp.add_argument("--runs-dir")
        sp.add_argument("--json", action="store_true")

    ap = sub.add_parser("apply", help="apply passes in order, then compare speed and outputs")
    common(ap)
    ap.add_argument("--passes", required=True, help="comma-separated, applied in order, e.g. conv-bn-fold,channels-last")
    se = sub.add_parser("search", help="search pass pipelines within a time budget")
    common(se)
    se.add_argument("--budget-s", type=_positive(float, 1), default=300)
    se.add_argument("--beam", type=_positive(), default=2)
    return p


def _config(a) -> ProfileConfig:
    return ProfileConfig(device=a.device, warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time)


def _cmd_list(a) -> int:
    rows = [{"name": p.name, "family": p.family, "description": p.description, "devices": list(p.devices)}
            for p in REGISTRY.values()]
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table([[r["name"], r["family"], ",".join(r["devices"]), r["description"][:90]] for r in rows],
                           ["pass", "family", "devices", "description"], left=(0, 1, 2, 3)))
    return 0


def _cmd_apply(a) -> int:
    names = [n.strip() for n in a.passes.split(",") if n.strip()]
    for n in names:
        get(n)  # unknown names: exit 2 before any work
    progress, close = _progress_bar(sys.stderr.isatty())
    try:
        loaded = load_model(a.model, batch_size=a.batch_size, seq_len=a.seq_len)
        result = optimize(loaded, names, _config(a), progress=progress, runs_dir=a.runs_dir, min_cosine=a.min_cosine,
                          min_top1=a.min_top1)
    finally:
        close()
    c, acc = result.comparison, result.accuracy
    out = {"base": {"median_ms": c.base_median_ms, "run_id": result.base_run_id},
           "optimized": {"median_ms": c.new_median_ms, "run_id": result.optimized_run_id},
           "speedup": c.speedup, "speedup_low": c.speedup_low, "speedup_high": c.speedup_high,
           "accuracy": acc.to_dict(), "passes": [r.to_dict() for r in result.passes],
           "size_bytes": {"base": result.base_size_bytes, "optimized": result.optimized_size_bytes},
           "graph_diff": result.graph_diff, "ops": [d.to_dict() for d in c.ops[:20]],
           "setup_differences": c.setup_differences}
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    for r in result.passes:
        print(f"{'applied' if r.applied else 'skipped'}  {r.name:20} " + (f"{r.apply_s:.2f} s" if r.applied else r.reason))
        for w in r.warnings:
            print(f"         note: {w}")
        for k in r.details.get("kept_float", []):  # accuracy-int8: the layers left in float, and why
            print(f"         kept float: {k['layer']} (sensitivity {k['sensitivity']:.3g}): {k['why']}")
    print(f"\nlatency   {c.base_median_ms:.4g} ms -> {c.new_median_ms:.4g} ms: {c.speedup:.2f}x "
          f"(range {c.speedup_low:.2f}-{c.speedup_high:.2f}x)")
    top1 = f", top-1 agreement {acc.top1_agreement:.1%}" if acc.top1_agreement is not None else ""
    print(f"accuracy  {'PASS' if acc.passed else 'FAIL'}: max abs err {acc.max_abs_err:.3g}, cosine {acc.cosine:.6f}{top1}"
          + (f" ({acc.note})" if acc.note else ""))
    if acc.inputs:
        print(f"          compared on {acc.inputs}")
    print(f"size      {result.base_size_bytes / 1e6:.2f} MB -> {result.optimized_size_bytes / 1e6:.2f} MB")
    print(f"runs      {result.base_run_id} -> {result.optimized_run_id}")
    return 0


def _cmd_search(a) -> int:
    progress, close = _progress_bar(sys.stderr.isatty())
    try:
        loaded = load_model(a.model, batch_size=a.batch_size, seq_len=a.seq_len)
        result = search(loaded, _config(a), budget_s=a.budget_s, beam=a.beam, min_cosine=a.min_cosine,
                        min_top1=a.min_top1, progress=progress)
    finally:
        close()
    best = result.best
    out = {"best": {"passes": best.passes, "speedup": best.speedup, "speedup_low": best.speedup_low,
                    "speedup_high": best.speedup_high, "median_ms": best.median_ms,
                    "accuracy": best.accuracy.to_dict() if best.accuracy else None} if best else None,
           "base_median_ms": result.base_median_ms, "leaderboard": [c.to_dict() for c in result.leaderboard],
           "stopped": result.stopped, "elapsed_s": result.elapsed_s,
           "vs_best_single": result.vs_best_single.to_dict() if result.vs_best_single else None}
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    rows = [["+".join(c.passes), c.status, f"{c.median_ms:.4g}" if c.median_ms else "", f"{c.speedup:.2f}" if c.speedup else "",
             f"{c.accuracy.cosine:.5f}" if c.accuracy else "", c.reason[:60]] for c in result.leaderboard]
    print(format_table(rows, ["pipeline", "status", "median ms", "speedup", "cosine", "why not"], left=(0, 1, 5)))
    print(f"\nbase {result.base_median_ms:.4g} ms; best: " + (f"{'+'.join(best.passes)} {best.speedup:.2f}x" if best else "none")
          + f"; stopped: {result.stopped} after {result.elapsed_s:.0f} s")
    if result.vs_best_single:
        print(head_to_head_line(result.vs_best_single.to_dict()))
    return 0


COMMANDS = {"list": _cmd_list, "apply": _cmd_apply, "search": _cmd_search}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ProfileCancelled, KeyboardInterrupt):
        print("error: cancelled", file=sys.stderr)
        return 130
    except (OpLensError, UnknownPassError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
