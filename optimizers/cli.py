"""python -m optimizers: list passes, apply a pipeline with proof, search for the best pipeline, list saved results."""
from __future__ import annotations

import argparse
import json
import sys

from profiler import (
    ModelLoadError,
    OpLensError,
    ProfileCancelled,
    ProfileConfig,
    RunStoreError,
    load_model,
    policy,
    store,
)
from profiler import stats
from profiler.analysis import explain
from profiler.console import Parser, err, fail_unexpected, format_table, positive, progress_bar, strip_verbose
from profiler.models.loading import reload_spec

from . import results
from .base import REGISTRY, UnknownPassError, get
from .optimize import optimize
from .search import head_to_head_line, search
from .tables import leaderboard_text
from .validate import MIN_COSINE, MIN_TOP1


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m optimizers", description="Apply optimization passes to a model and prove the result.")
    p.add_verbose()
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    ls = sub.add_parser("list", help="list the passes")
    ls.add_argument("--json", action="store_true")

    def common(sp):
        sp.add_argument("model", nargs="?", help="sample model name, file.py:factory, HF directory, hf:<hub id>, ...")
        sp.add_argument("--from-run", metavar="RUN_ID",
                        help="instead of a model: a saved run's model, measured with that run's config")
        sp.add_argument("--device", default="auto")
        sp.add_argument("--batch-size", type=positive(), default=None)
        sp.add_argument("--seq-len", type=positive(maximum=policy.MAX_SEQ_LEN), default=None)
        sp.add_argument("--warmup", type=positive(minimum=0), default=3)
        sp.add_argument("--repeats", type=positive(), default=10)
        sp.add_argument("--min-time", type=positive(float, 0), default=1.0)
        sp.add_argument("--min-cosine", type=float, default=MIN_COSINE)
        sp.add_argument("--min-top1", type=float, default=MIN_TOP1)
        sp.add_argument(
            "--runs-dir", help="where runs and the comparison are saved (default $OPLENS_RUNS_DIR or ./runs)"
        )
        sp.add_argument("--json", action="store_true")

    ap = sub.add_parser("apply", help="apply passes in order, then compare speed and outputs")
    common(ap)
    ap.add_argument(
        "--passes", required=True, help="comma-separated, applied in order, e.g. conv-bn-fold,channels-last"
    )
    se = sub.add_parser("search", help="search pass pipelines within a time budget")
    common(se)
    se.add_argument("--budget-s", type=positive(float, 1), default=300)
    se.add_argument("--beam", type=positive(), default=2)
    se.add_argument("--passes", help="comma-separated: search only these passes (default: every pass that applies)")
    se.add_argument("--include-emulated", action="store_true",
                    help="also try passes in a precision this CPU has no instructions for (bf16 on AVX2: slower)")
    ge = sub.add_parser("generate", help="optimize greedy generation of a decoder: TTFT, TPOT, tokens/s side by side")
    ge.add_argument("model", help="a causal LM: llama, qwen2, gpt2 (or -tiny), an HF directory, hf:<id>")
    how = ge.add_mutually_exclusive_group(required=True)
    how.add_argument("--passes", help="comma-separated, applied in order, e.g. bf16,static-cache-compile")
    how.add_argument("--search", action="store_true", help="try each pass, then pairs of the best, for --objective")
    ge.add_argument("--objective", choices=("tpot", "ttft"), default="tpot")
    ge.add_argument("--device", default="auto")
    ge.add_argument("--batch-size", type=positive(), default=1)
    ge.add_argument("--prompt-len", type=positive(), default=128)
    ge.add_argument("--new-tokens", type=positive(), default=64)
    ge.add_argument("--rounds", type=positive(), default=3, help="ABBA rounds of base and optimized generations")
    ge.add_argument("--reference-text", metavar="FILE", help="text (models with a tokenizer) or token ids: the "
                    "change in perplexity on it is reported beside token agreement")
    ge.add_argument("--runs-dir", help="where the result is saved (default $OPLENS_RUNS_DIR or ./runs)")
    ge.add_argument("--json", action="store_true")
    tr = sub.add_parser("train", help="training passes with proof: step time per sample side by side (ABBA), loss "
                                      "curves and held-out loss from the same weights and samples, peak memory")
    tr.add_argument("model", help="sample model name (its natural loss) or file.py:factory returning (module, "
                                  "batch or Dataset, loss)")
    how_t = tr.add_mutually_exclusive_group(required=True)
    how_t.add_argument("--passes", help="comma-separated training passes, e.g. fused-optimizer,torch-compile")
    how_t.add_argument("--search", action="store_true", help="each speed pass alone, then the winners together")
    tr.add_argument("--batch-size", type=positive(), default=None)
    tr.add_argument("--seq-len", type=positive(maximum=policy.MAX_SEQ_LEN), default=None)
    tr.add_argument("--optimizer", default="adamw")
    tr.add_argument("--rounds", type=positive(), default=2, help="ABBA rounds (default 2)")
    tr.add_argument("--steps", type=positive(), default=3, help="steps per timing (default 3)")
    tr.add_argument("--curve-steps", type=positive(), default=8, help="steps of the compared loss curves")
    tr.add_argument("--device", default="auto")
    tr.add_argument("--runs-dir", help="where the comparison is saved (default $OPLENS_RUNS_DIR or ./runs)")
    tr.add_argument("--json", action="store_true")
    rs = sub.add_parser("results", help="list saved comparisons (every apply and search); with an ID, one of them "
                                        "and why it helped or hurt")
    rs.add_argument("id", nargs="?", help="a comparison id: show it with the causes named from its per-op diff")
    rs.add_argument("--runs-dir", help="the runs directory (default $OPLENS_RUNS_DIR or ./runs)")
    rs.add_argument("--json", action="store_true", help="print a JSON list of the saved comparisons")
    return p


def _config(a) -> ProfileConfig:
    return ProfileConfig(device=a.device, warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time)


def _model(a):
    """(loaded model, config, arch, source run id): the model named, or with --from-run a saved run's model and
    config."""
    if bool(a.model) == bool(a.from_run):
        raise ModelLoadError("name a model or give --from-run RUN_ID (one of the two)")
    if not a.from_run:
        return load_model(a.model, batch_size=a.batch_size, seq_len=a.seq_len), _config(a), None, ""
    run = store.load(a.from_run, a.runs_dir)
    spec, arch = reload_spec(run.model, run.id)
    config = ProfileConfig.from_dict(run.config.to_dict())
    loaded = load_model(spec, batch_size=config.batch_size or None, seq_len=config.seq_len or None, arch=arch)
    return loaded, config, arch, run.id


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
    progress, close = progress_bar()
    try:
        loaded, config, arch, source = _model(a)
        result = optimize(loaded, names, config, progress=progress, runs_dir=a.runs_dir, min_cosine=a.min_cosine,
                          min_top1=a.min_top1)
    finally:
        close()
    saved = results.keep(results.from_apply(result, loaded, config, arch, source), a.runs_dir)
    c, acc = result.comparison, result.accuracy
    out = {"base": {"median_ms": c.base_median_ms, "run_id": result.base_run_id},
           "optimized": {"median_ms": c.new_median_ms, "run_id": result.optimized_run_id},
           "speedup": c.speedup, "speedup_low": c.speedup_low, "speedup_high": c.speedup_high,
           "accuracy": acc.to_dict(), "passes": [r.to_dict() for r in result.passes],
           "size_bytes": {"base": result.base_size_bytes, "optimized": result.optimized_size_bytes},
           "graph_diff": result.graph_diff, "ops": [d.to_dict() for d in c.ops[:20]],
           "setup_differences": c.setup_differences, "comparison_id": saved.id, "verdict": c.verdict,
           "load": c.load.to_dict() if c.load else None}
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    for r in result.passes:
        print(
            f"{'applied' if r.applied else 'skipped'}  {r.name:20} " + (f"{r.apply_s:.2f} s" if r.applied else r.reason)
        )
        for w in r.warnings:
            print(f"         note: {w}")
        for k in r.details.get("kept_float", []):  # accuracy-int8: the layers left in float, and why
            print(f"         kept float: {k['layer']} (sensitivity {k['sensitivity']:.3g}): {k['why']}")
    print(f"\nlatency   {c.base_median_ms:.4g} ms -> {c.new_median_ms:.4g} ms: {c.speedup:.2f}x "
          f"(range {c.speedup_low:.2f}-{c.speedup_high:.2f}x)")
    busy = c.load.text if c.load is not None and c.load.busy else ""
    if line := stats.verdict_line(c.speedup, c.speedup_low, c.speedup_high, busy):
        print(f"verdict   {line}")
    if busy:
        print(f"load      {busy}")
    top1 = f", top-1 agreement {acc.top1_agreement:.1%}" if acc.top1_agreement is not None else ""
    print(
        f"accuracy  {'PASS' if acc.passed else 'FAIL'}: max abs err {acc.max_abs_err:.3g}, cosine "
        f"{acc.cosine:.6f}{top1}"
        + (f" ({acc.note})" if acc.note else "")
    )
    if acc.inputs:
        print(f"          compared on {acc.inputs}")
    print(f"size      {result.base_size_bytes / 1e6:.2f} MB -> {result.optimized_size_bytes / 1e6:.2f} MB")
    print(f"runs      {result.base_run_id} -> {result.optimized_run_id}")
    print(f"saved     comparison {saved.id} (python -m optimizers results)")
    return 0


def _cmd_search(a) -> int:
    names = [n.strip() for n in (a.passes or "").split(",") if n.strip()]
    for n in names:
        get(n)  # unknown names: exit 2 before any work
    progress, close = progress_bar()
    try:
        loaded, config, arch, source = _model(a)
        result = search(loaded, config, budget_s=a.budget_s, beam=a.beam, min_cosine=a.min_cosine,
                        min_top1=a.min_top1, progress=progress, save_runs=True, runs_dir=a.runs_dir,
                        passes=names or None, include_emulated=a.include_emulated)
    finally:
        close()
    saved = results.keep(results.from_search(result, loaded, config, arch, source), a.runs_dir)
    best = result.best
    out = {"best": {"passes": best.passes, "speedup": best.speedup, "speedup_low": best.speedup_low,
                    "speedup_high": best.speedup_high, "median_ms": best.median_ms,
                    "accuracy": best.accuracy.to_dict() if best.accuracy else None} if best else None,
           "base_median_ms": result.base_median_ms, "leaderboard": [c.to_dict() for c in result.leaderboard],
           "stopped": result.stopped, "elapsed_s": result.elapsed_s,
           "vs_best_single": result.vs_best_single.to_dict() if result.vs_best_single else None,
           "base_run_id": result.base_run_id, "best_run_id": result.best_run_id, "comparison_id": saved.id,
           "verdict": result.verdict, "verdict_text": result.verdict_text,
           "finalists": result.finalists.to_dict() if result.finalists else None,
           "load": result.load.to_dict() if result.load else None}
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(leaderboard_text(result))
    print(
        f"\nbase {result.base_median_ms:.4g} ms; best: "
        + (f"{'+'.join(best.passes)} {best.speedup:.2f}x" if best else "none")
        + f"; stopped: {result.stopped} after {result.elapsed_s:.0f} s"
    )
    if result.vs_best_single:
        print(head_to_head_line(result.vs_best_single.to_dict()))
    if result.verdict_text:
        print(f"verdict: {result.verdict_text}")
    print(f"saved comparison {saved.id} (python -m optimizers results)")
    return 0


def _cmd_train(a) -> int:
    from profiler.schema import TrainConfig

    from .tables import training_text
    from .training import TRAIN_PASSES, compare, search

    config = TrainConfig(batch_size=a.batch_size or 0, optimizer=a.optimizer, device=a.device)
    loaded = load_model(a.model, batch_size=a.batch_size, seq_len=a.seq_len)
    timing = {"rounds": a.rounds, "steps": a.steps, "curve_steps": a.curve_steps}
    progress, close = progress_bar(False if a.json else None)
    try:
        if a.search:
            found = search(loaded, config, progress=progress, **timing)
        else:
            names = [p.strip() for p in a.passes.split(",") if p.strip()]
            found = [compare(loaded, names, config, progress=progress, **timing)]
    finally:
        close()
    saved = results.keep(results.from_training(found, loaded, config), a.runs_dir)
    if a.json:
        print(json.dumps([r.to_dict() for r in found], indent=1))
        return 0
    print(f"training passes on {loaded.info.name} (time per sample, base / optimized; memory: one step's peak)")
    print(training_text(found))
    for r in found:
        print(f"- {r.verdict}")
        for note in r.notes:
            print(f"  {note}")
    print(f"saved as comparison {saved.id} (`python -m optimizers results {saved.id}`; the Train page shows it)")
    memory = [n for n, p in TRAIN_PASSES.items() if p.memory]
    print(f"memory passes ({', '.join(memory)}) trade time for peak memory: name them in --passes to measure them")
    return 0


def _cmd_generate(a) -> int:
    from profiler.schema import GenerateConfig

    from .generation import PASSES, load_reference, optimize_or_search, text_lines
    from .tables import generation_text

    names = [n.strip() for n in (a.passes or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise UnknownPassError(f"not a generation pass: {', '.join(unknown)}; use {', '.join(PASSES)}")
    config = GenerateConfig(batch_size=a.batch_size, prompt_len=a.prompt_len, new_tokens=a.new_tokens, device=a.device)
    store.check_writable(a.runs_dir)  # before minutes of timing, not after
    progress, close = progress_bar()
    try:
        loaded = load_model(a.model)
        ref = load_reference(loaded, a.reference_text) if a.reference_text else None
        found, saved = optimize_or_search(loaded, config, names, a.search, a.objective, a.rounds, a.runs_dir,
                                          progress=progress, reference_ids=ref)
    finally:
        close()
    if a.json:
        print(json.dumps({"objective": a.objective, "best": found[0].to_dict() if found else None,
                          "tried": [r.to_dict() for r in found], "saved": saved.id}, indent=1))
        return 0
    print(generation_text(found))
    for r in found[:1]:
        for p in r.passes:
            print(
                f"{'applied' if p.applied else 'skipped'}  {p.name:22} "
                + (f"{p.apply_s:.2f} s" if p.applied else p.reason)
            )
        print(f"speedups are base / optimized medians, (10-90% of {r.tpot_speedup.rounds} paired ABBA rounds); "
              f"{r.device}, {r.threads} threads, torch {r.torch_version}")
        print(f"agreement: free-running greedy tokens equal at the same position / teacher-forced over "
              f"{r.forced_prompts} prompt(s)")
        for line in text_lines(r):
            print(line)
    print(f"saved      comparison {saved.id} (python -m optimizers results)")
    return 0


def _cmd_result(a) -> int:
    """One saved comparison and why it helped or hurt (profiler.analysis.explain over its two runs)."""
    saved = store.load_comparison(a.id, a.runs_dir)
    try:
        verdict, causes = explain.for_saved(saved, a.runs_dir)
    except RunStoreError as exc:  # a run deleted since, or a kind with no pair of runs: the record still shows
        verdict, causes = f"not explained: {exc}", []
    if a.json:
        print(json.dumps({**saved.to_dict(), "verdict": verdict, "causes": [c.to_dict() for c in causes]}, indent=1))
        return 0
    row = results.summary_row(saved)
    print(f"{saved.kind} {saved.id}: {row['model']}, {row['passes']}, {row['speedup']}, accuracy {row['accuracy']}")
    if saved.kind == "train":  # training passes keep no runs: their table and verdicts are the record
        from .tables import training_text

        print(training_text(saved.training))
        for r in saved.training:
            print(f"- {r.verdict}")
        return 0
    print(f"runs      {saved.base_run_id} -> {saved.optimized_run_id}")
    print(f"why       {verdict}")
    for c in causes:
        print(f"  {c.delta_ms:+10.3g} ms  {c.text}")
    if causes:
        print("          (ms per profiled inference; + slower, - faster)")
    return 0


def _cmd_results(a) -> int:
    if a.id:
        return _cmd_result(a)
    saved = store.list_comparisons(a.runs_dir)
    if a.json:
        print(json.dumps([c.to_dict() for c in saved], indent=1))
        return 0
    if not saved:
        print(f"no saved comparisons in {store.runs_dir(a.runs_dir)}: run `python -m optimizers apply` or `search`")
        return 0
    rows = [list(results.summary_row(c).values()) for c in saved]
    print(format_table(rows, ["id", "created", "kind", "model", "passes", "speedup (range)", "accuracy", "problem"],
                       left=(0, 1, 2, 3, 4, 6, 7)))
    return 0


COMMANDS = {
    "list": _cmd_list,
    "apply": _cmd_apply,
    "search": _cmd_search,
    "generate": _cmd_generate,
    "train": _cmd_train,
    "results": _cmd_results,
}


def main(argv: list[str] | None = None) -> int:
    argv, _ = strip_verbose(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ProfileCancelled, KeyboardInterrupt):
        print("error: cancelled", file=err())
        return 130
    except (OpLensError, UnknownPassError) as exc:
        print(f"error: {exc}", file=err())
        return 2
    except Exception as exc:  # noqa: BLE001 - never a bare traceback on the terminal
        return fail_unexpected(exc)
