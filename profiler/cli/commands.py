"""python -m profiler: list sample models, profile a model, manage saved runs.

Bad input exits 2 with one `error:` line on stderr and no traceback; Ctrl-C cancels a measurement and saves nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from profiler import policy, store
from profiler.analysis import frames as analysis
from profiler.analysis import tables
from profiler.console import Parser, err, fail_unexpected, format_table, positive, progress_bar, strip_verbose
from profiler.measure.session import profile
from profiler.models import sources
from profiler.models.loading import load_model
from profiler.schema import OpLensError, ProfileCancelled, ProfileConfig, ProfileRun
from profiler.stats import significant


def _int_list(text: str, maximum: int | None = None) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': give one or more numbers, each at least 1")
    if maximum is not None and max(values) > maximum:
        raise argparse.ArgumentTypeError(f"'{text}': each must be at most {maximum}")
    return values


def _choice_list(*choices: str):
    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"'{text}': choose from {', '.join(choices)}")
        return values
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m profiler", description="Profile PyTorch models: latency, per-op time, transfers, graph.")
    p.add_verbose()
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    m = sub.add_parser("models", help="list the sample models")
    m.add_argument("--json", action="store_true")

    pr = sub.add_parser("profile", help="profile a model and save the run")
    pr.add_argument("model", help="sample model name, file.py:factory, HF directory, hf:<hub id>, TorchScript, .pt2, "
                                  "or a state dict with --arch")
    pr.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA if present)")
    pr.add_argument("--batch-size", type=positive(), default=None)
    pr.add_argument("--seq-len", type=positive(maximum=policy.MAX_SEQ_LEN), default=None,
                    help="sequence length, or image size for vision models")
    pr.add_argument("--warmup", type=positive(minimum=0), default=3)
    pr.add_argument("--repeats", type=positive(), default=10, help="minimum timed iterations")
    pr.add_argument("--min-time", type=positive(float, 0), default=1.0, help="minimum timed seconds (default 1)")
    pr.add_argument("--profile-iters", type=positive(), default=3, help="iterations recorded by torch.profiler")
    pr.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    pr.add_argument("--no-graph", action="store_true", help="skip graph capture")
    pr.add_argument("--arch", help="architecture (sample model name) for a state-dict file")
    pr.add_argument("--inputs", help="example inputs for a model file: torch-saved tensor, tuple or dict")
    pr.add_argument("--runs-dir", help="where runs are saved (default $OPLENS_RUNS_DIR or ./runs)")
    pr.add_argument("--top", type=positive(), default=15, help="operators shown in the table")
    pr.add_argument("--json", action="store_true", help="print only the run, as JSON")

    r = sub.add_parser("runs", help="list saved runs")
    r.add_argument("--runs-dir")
    r.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="print a saved run")
    s.add_argument("run_id")
    s.add_argument("--runs-dir")
    s.add_argument("--top", type=positive(), default=15)
    s.add_argument("--json", action="store_true")

    rn = sub.add_parser("rename", help="set a saved run's label")
    rn.add_argument("run_id")
    rn.add_argument("label")
    rn.add_argument("--runs-dir")

    sw = sub.add_parser("sweep", help="latency, throughput and memory across batch sizes, lengths, threads, dtypes")
    sw.add_argument("model")
    sw.add_argument("--batch-sizes", type=_int_list, required=True, help="comma-separated, e.g. 1,2,4,8")
    sw.add_argument("--seq-lens", type=lambda t: _int_list(t, policy.MAX_SEQ_LEN),
                    help="sequence lengths or image sizes, e.g. 64,128,256")
    sw.add_argument("--threads", type=_int_list, help="CPU thread counts, e.g. 1,2")
    sw.add_argument("--dtypes", type=_choice_list("float32", "bfloat16", "float16"), help="e.g. float32,bfloat16")
    sw.add_argument("--devices", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], help="e.g. cpu,cuda")
    sw.add_argument("--warmup", type=positive(minimum=0), default=2)
    sw.add_argument("--repeats", type=positive(), default=5)
    sw.add_argument("--min-time", type=positive(float, 0), default=0.5)
    sw.add_argument("--arch")
    sw.add_argument("--runs-dir")
    sw.add_argument("--json", action="store_true")

    pk = sub.add_parser("peaks", help="this machine's measured limits: GEMM GFLOP/s per dtype, memory bandwidth")
    pk.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    pk.add_argument("--refresh", action="store_true", help="measure again instead of reading the cache")
    pk.add_argument("--gpu", help="published spec of a GPU by name (e.g. 'H100', 'MI300X') instead of measuring")
    pk.add_argument("--json", action="store_true")

    im = sub.add_parser("import", help="import PyTorch profiler traces as a run (several files: the ranks of one job)")
    im.add_argument(
        "traces", nargs="+", metavar="TRACE", help=".pt.trace.json or .json.gz from torch.profiler / Kineto"
    )
    im.add_argument("--runs-dir", help="where the run is saved (default $OPLENS_RUNS_DIR or ./runs)")
    im.add_argument("--top", type=positive(), default=15, help="operators and kernels shown")
    im.add_argument("--json", action="store_true", help="print only the run, as JSON")

    g = sub.add_parser("generate", help="greedy generation of a causal LM: TTFT, per-token latency, KV cache, roofs")
    g.add_argument("model", help="a decoder: gpt2, llama, qwen2 (or -tiny), file.py:factory, HF directory, hf:<hub id>")
    g.add_argument("--prompt-len", type=positive(maximum=policy.MAX_SEQ_LEN), default=32,
                   help="prompt tokens per sequence")
    g.add_argument("--new-tokens", type=positive(), default=32, help="tokens generated per sequence")
    g.add_argument("--batch-size", type=positive(), default=1)
    g.add_argument("--cache", default="dynamic", choices=["dynamic", "static"], help="KV cache kind (default dynamic)")
    g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--warmup", type=positive(minimum=0), default=2, help="untimed generations first")
    g.add_argument("--repeats", type=positive(), default=5, help="minimum timed generations")
    g.add_argument("--min-time", type=positive(float, 0), default=1.0, help="minimum timed seconds (default 1)")
    g.add_argument("--runs-dir")
    g.add_argument("--top", type=positive(), default=8, help="operators shown per phase")
    g.add_argument("--json", action="store_true", help="print only the run, as JSON")

    rp = sub.add_parser("report", help="one self-contained HTML report of a run, or of two runs compared")
    rp.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="one run, or two: base then new")
    rp.add_argument("--html", required=True, metavar="OUT.html", help="the file to write")
    rp.add_argument("--runs-dir")

    tbp = sub.add_parser(
        "tensorboard", help="TensorBoard with the PyTorch profiler plugin on the run store (localhost)"
    )
    tbp.add_argument("--runs-dir")
    tbp.add_argument("--port", type=positive(), default=6006)

    ex = sub.add_parser("explore", help="the run's graph in Model Explorer on localhost: per-node exec/transfer ms, "
                                        "GFLOP and roofline bound as overlays")
    ex.add_argument("run_id")
    ex.add_argument("--export", metavar="DIR", help="only write the graph and overlay JSON files to DIR")
    ex.add_argument("--port", type=positive(), help="default: a free port")
    ex.add_argument("--runs-dir")

    rc = sub.add_parser(
        "recommend", help="why is it slow: rules over a run and its roofline, each with an estimated speedup"
    )
    rc.add_argument("run_id")
    rc.add_argument("--apply", action="store_true", help="apply each recommendation's passes with proof and measure")
    rc.add_argument("--warmup", type=positive(minimum=0), help="warm-up iterations when applying (default: the run's)")
    rc.add_argument("--repeats", type=positive(), help="timed iterations when applying (default: the run's)")
    rc.add_argument("--runs-dir")
    rc.add_argument("--json", action="store_true", help="print [{title, evidence, passes, estimated_speedup, "
                                                        "measured_speedup}]")

    d = sub.add_parser("delete", help="delete a saved run")
    d.add_argument("run_id")
    d.add_argument("--runs-dir")
    return p


# ---------------------------------------------------------------- text rendering

def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} GiB"


def render_run(run: ProfileRun, top: int = 15) -> str:
    t, lat = run.totals, run.latency
    total = t.exec_ms + t.trans_ms or 1.0
    rows = []
    for o in run.ops[:top]:
        own = o.exec_ms + o.trans_ms
        gflops = analysis.op_gflops_per_s(o)
        rows.append([o.name, f"{o.calls:g}", _ms(o.exec_ms), _ms(o.trans_ms), f"{100 * own / total:.1f}",
                     f"{gflops:.1f}" if gflops else "", (o.input_shapes[0] if o.input_shapes else "")[:48]])
    scope = "totals over the trace" if run.model.source == "trace" else "per inference"
    out = [
        f"Top operators of {run.model.name} ({scope}, self time on {run.device.kind})",
        format_table(rows, ["operator", "calls", "exec ms", "trans ms", "%", "GFLOP/s", "input shapes"], left=(0, 6)),
        "",
    ]
    med = significant(lat.median_ms, lat.iqr_ms)
    out.append(f"run        {run.id}")
    s = tables.setup(run)
    out.append(f"model      {s['model']}, parameters {s['parameters']}; batch x seq/image {s['batch × seq/image']}; "
               f"dtype {s['dtype']}")
    out.append(f"device     {s['device']}, threads {s['threads']}, torch {s['torch']}")
    out.append(f"latency    median {med} ms (IQR {lat.iqr_ms:.2g}, p90 {_ms(lat.p90_ms)}, p99 {_ms(lat.p99_ms)}, "
               f"n={len(lat.samples_ms)}), throughput {analysis.throughput_per_s(run):.1f} samples/s")
    out.append(f"breakdown  T_exec {_ms(t.exec_ms)} ms + T_trans {_ms(t.trans_ms)} ms = {100 * t.coverage:.1f}% of "
               f"{_ms(t.wall_ms)} ms profiled wall time; unexplained {_ms(t.unexplained_ms)} ms")
    out.append(f"           T_trans here is {t.trans_label}")
    rate = analysis.flop_rate(run)
    if rate.flops:
        out.append(f"work       {rate.flops / 1e9:.4g} GFLOP per inference, {rate.gflops_per_s:.1f} GFLOP/s achieved; "
                   f"{rate.coverage_text()}")
    if run.memory:
        out.append(f"memory     peak {_bytes(run.memory.peak_bytes)} ({run.memory.kind}), "
                   f"+{_bytes(run.memory.peak_bytes - run.memory.baseline_bytes)} during inference")
    if run.profiled_latency or run.paired_latency:  # an imported trace has no unprofiled iterations to compare
        out.append(f"overhead   profiled {_ms(run.profiled_latency.median_ms if run.profiled_latency else 0)} ms vs "
                   f"unprofiled {_ms(run.paired_latency.median_ms if run.paired_latency else 0)} ms: "
                   f"{run.overhead_ratio:.3f}x")
    g = run.graph
    out.append(f"graph      {g.method}: {len(g.nodes)} nodes, {g.timed_nodes} with measured time"
               + (f" ({g.note})" if g.note else ""))
    for tr in run.transfers:
        out.append(f"transfer   {tr.direction}: {tr.calls:g} copies, {_bytes(tr.bytes)}, {_ms(tr.time_ms)} ms")
    if run.trace_path:
        out.append(f"trace      {run.trace_path}")
    for note in run.notes:
        out.append(f"note       {note}")
    for warning in run.warnings:
        out.append(f"WARNING    {warning}")
    return "\n".join(out)


def render_generation(run: ProfileRun, top: int = 8) -> str:
    """The generation summary: TTFT, TPOT, throughput, KV cache, each phase against its roof, latency as context
    grows."""
    g = run.generation
    c = g.config
    t = g.tpot_ms
    out = [f"Greedy generation of {run.model.name} ({run.model.parameters:,} parameters): batch {c.batch_size}, prompt "
           f"{c.prompt_len} -> {c.new_tokens} new tokens, {c.cache} cache, {c.dtype}, on {run.device.kind} "
           f"({run.device.threads} threads)", ""]
    ttft_iqr = g.ttft.iqr_ms if g.ttft else 0.0
    out.append(
        f"TTFT       {significant(g.ttft_ms, ttft_iqr)} ms (prefill step, median of "
        f"{len(g.ttft.samples_ms) if g.ttft else 0}"
        f" generations, IQR {ttft_iqr:.2g}); prefill {g.prefill_tokens_per_s:,.0f} tokens/s"
    )
    if t.n:
        out.append(
            f"TPOT       median {significant(t.median, t.iqr)} ms, p90 {_ms(t.p90)} ms (IQR {t.iqr:.2g}, "
            f"n={t.n} decode "
            f"steps, {t.noise}); decode {g.decode_tokens_per_s:,.1f} tokens/s (batch / TPOT)"
        )
    else:
        out.append("TPOT       none: one new token is the prefill alone")
    out.append(
        f"e2e        {_ms(g.e2e_ms)} ms per generation; {g.tokens_per_s:,.1f} tokens/s (batch x new tokens / e2e)"
    )
    lay = g.kv_layout
    check = "matches" if g.kv_cache_bytes == g.kv_cache_formula_bytes else "DIFFERS from"
    out.append(
        f"KV cache   {_bytes(g.kv_cache_bytes)} at the end, measured; {check} 2 x {lay.get('layers')} layers x "
        f"{lay.get('kv_heads')} kv heads x {lay.get('head_dim')} x {g.kv_cache_tokens} tokens x batch {c.batch_size} x "
        f"{lay.get('element_bytes')} B = {_bytes(g.kv_cache_formula_bytes)}; {_bytes(g.kv_bytes_per_token)} per token"
    )
    if t.n and g.decode_floor_ms:
        out.append(f"decode     floor {_ms(g.decode_floor_ms)} ms/step = ({_bytes(g.weight_bytes_per_step)} weights + "
                   f"{_bytes(g.decode_bytes_per_token - g.weight_bytes_per_step)} KV cache read per step) / "
                   f"{g.mem_bw_gbs:.1f} GB/s; measured TPOT is {t.median / g.decode_floor_ms:.1f}x the floor")
    if g.prefill_floor_ms and g.ttft_ms:
        out.append(
            f"prefill    floor {_ms(g.prefill_floor_ms)} ms = {g.phases[0].flops / 1e9:.3g} GFLOP / "
            f"{g.peak_gflops:,.0f} "
            "GFLOP/s (or its bytes / bandwidth, if more); measured TTFT is "
            f"{g.ttft_ms / g.prefill_floor_ms:.1f}x the floor"
        )
    if run.memory:
        out.append(f"memory     peak {_bytes(run.memory.peak_bytes)} ({run.memory.kind}), "
                   f"+{_bytes(run.memory.peak_bytes - run.memory.baseline_bytes)} while generating")
    out.append(f"peaks      {g.peaks_source}")
    out.append("")
    rows = [
        [
            p.name,
            str(p.steps),
            _ms(p.wall_ms),
            _ms(p.exec_ms),
            _ms(p.trans_ms),
            f"{p.flops / 1e9:.3g}",
            _bytes(p.bytes),
            p.roof,
            _ms(p.floor_ms),
            _ms(p.measured_ms),
            f"{100 * p.roof_fraction:.1f}",
        ]
        for p in g.phases
    ]
    out.append(format_table(rows, ["phase", "steps", "profiled ms", "T_exec ms", "T_trans ms", "GFLOP", "bytes", "roof",
                                   "floor ms", "measured ms", "% of roof"], left=(0, 7)))
    for p in g.phases:
        if not p.ops:
            continue
        total = p.exec_ms + p.trans_ms or 1.0
        rows = [
            [o.name, f"{o.calls:g}", _ms(o.exec_ms), _ms(o.trans_ms), f"{100 * (o.exec_ms + o.trans_ms) / total:.1f}"]
            for o in p.ops[:top]
        ]
        out += ["", f"Top operators in {p.name} (all {p.steps} step(s) of one generation)",
                format_table(rows, ["operator", "calls", "exec ms", "trans ms", "%"])]
    if g.itl_ms:
        idx = sorted({round(i * (len(g.itl_ms) - 1) / 4) for i in range(5)})
        rows = [[str(g.context_lens[i]), _ms(g.itl_ms[i])] for i in idx]
        out += ["", "Decode step time as the context grows (median over generations)",
                format_table(rows, ["context tokens", "step ms"])]
    ids = g.token_ids[0] if g.token_ids else []
    out += ["", f"tokens     {ids[:16]}{' ...' if len(ids) > 16 else ''} (sequence 0, greedy)"]
    out += [f"text       {' '.join(g.text.split())[:300]}"] if g.text else []
    out += [f"run        {run.id}"]
    if run.trace_path:
        out.append(f"trace      {run.trace_path}")
    out += [f"note       {n}" for n in run.notes]
    return "\n".join(out)


# ---------------------------------------------------------------- commands

def _cmd_models(a) -> int:
    if a.json:
        print(
            json.dumps(
                [
                    {
                        "name": m.name,
                        "description": m.description,
                        "input": m.input_kind,
                        "batch_size": m.batch_size,
                        "seq_len": m.seq_len,
                    }
                    for m in sources.catalogue()
                ],
                indent=1,
            )
        )
        return 0
    rows = [[m.name, m.input_kind, str(m.batch_size), str(m.seq_len or ""), m.description] for m in sources.catalogue()]
    print(format_table(rows, ["name", "input", "batch", "seq/img", "description"], left=(0, 1, 4)))
    return 0


def _measure_and_save(a, load: Callable, measure: Callable, render: Callable) -> int:
    """What profile and generate share: check the runs dir first, load with progress, measure, save, print."""
    store.check_writable(a.runs_dir)  # before a minute of measuring, not after
    progress, close = progress_bar()
    try:
        if progress:
            progress(f"loading {a.model}", 0.0)
        run = measure(load(), progress)
    finally:
        close()
    store.save(run, a.runs_dir)
    print(json.dumps(run.to_dict(), indent=1) if a.json else render(run))
    return 0


def _cmd_profile(a) -> int:
    config = ProfileConfig(device=a.device, warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time,
                           profile_iters=a.profile_iters, dtype=a.dtype, graph=not a.no_graph)
    return _measure_and_save(
        a, lambda: load_model(a.model, batch_size=a.batch_size, seq_len=a.seq_len, arch=a.arch, inputs=a.inputs),
        lambda loaded, progress: profile(loaded, config, progress=progress), lambda run: render_run(run, a.top))


def render_import(run: ProfileRun, top: int = 15) -> str:
    """What only an imported trace has: kernels, the GPU timeline per step, ranks, and the validation report."""
    out = []
    if run.kernels:
        rows = [[k.name[:70], f"{k.calls:g}", _ms(k.time_ms), k.op[:40]] for k in run.kernels[:top]]
        out += ["Top kernels (totals over the trace)", format_table(rows, ["kernel", "calls", "ms", "launched by"],
                                                                     left=(0, 3)), ""]
    g = run.gpu
    if g is not None:
        out.append(f"gpu        per step ({g.steps} step{'s' if g.steps != 1 else ''}, window from {g.window_source}): "
                   f"window {_ms(g.window_ms)} ms, busy {_ms(g.busy_ms)}, idle {_ms(g.idle_ms)} "
                   f"(host {_ms(g.idle_host_ms)}, sync {_ms(g.idle_sync_ms)}, other {_ms(g.idle_other_ms)})")
        out.append(f"           computation {_ms(g.computation_ms)} ms, communication {_ms(g.comm_ms)} "
                   f"(exposed {_ms(g.exposed_comm_ms)}), memcpy {_ms(g.memcpy_ms)}, memset {_ms(g.memset_ms)}; "
                   f"launch-to-start median {_ms(g.launch_overhead_ms)} ms, {g.short_kernels:g} kernels under 10 us")
    for r in run.ranks:
        out.append(
            f"rank {r.rank:<5} step {_ms(r.step_ms)} ms, computation {_ms(r.computation_ms)}, comm "
            f"{_ms(r.comm_ms)} ({100 * r.overlap:.0f}% overlapped){'  STRAGGLER: ' + r.note if r.straggler else ''}"
        )
    v = run.validation
    if v is not None:
        out.append("read       " + ", ".join(f"{n} {k}" for k, n in sorted(v.read.items(), key=lambda x: -x[1])))
        for s in v.skipped:
            out.append(f"skipped    {s.count} {s.what}: {s.why}")
    return "\n".join(out)


def _cmd_import(a) -> int:
    from profiler.traces.importer import import_trace

    store.check_writable(a.runs_dir)
    run = import_trace(a.traces)  # the command line reads any file its user names
    saved = store.save(run, a.runs_dir)
    if a.json:
        print(json.dumps(run.to_dict(), indent=1))
    else:
        print(render_run(run, a.top))
        print(render_import(run, a.top))
        print(f"saved      {saved}")
    return 0


def _cmd_generate(a) -> int:
    from profiler.measure.generate import generate
    from profiler.schema import GenerateConfig

    config = GenerateConfig(batch_size=a.batch_size, prompt_len=a.prompt_len, new_tokens=a.new_tokens, cache=a.cache,
                            dtype=a.dtype, device=a.device, warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time)
    return _measure_and_save(
        a, lambda: load_model(a.model, batch_size=a.batch_size, seq_len=a.prompt_len),
        lambda loaded, progress: generate(loaded, config, progress=progress),
        lambda run: render_generation(run, a.top))


def _cmd_runs(a) -> int:
    listing = store.scan_runs(a.runs_dir)
    runs = listing.runs
    if listing.note:
        print(f"note: {listing.note}", file=err())
    if a.json:
        print(json.dumps([vars(r) for r in runs], indent=1))
        return 0
    if not runs:
        print(f"no saved runs in {store.runs_dir(a.runs_dir)}")
        return 0
    rows = [[r.id, r.label, r.model, r.device[:40], r.created, _ms(r.median_ms)] for r in runs]
    print(format_table(rows, ["id", "label", "model", "device", "created", "median ms"], left=(0, 1, 2, 3, 4)))
    return 0


def _cmd_show(a) -> int:
    run = store.load(a.run_id, a.runs_dir)
    if a.json:
        print(json.dumps(run.to_dict(), indent=1))
    elif run.generation:
        print(render_generation(run, a.top))
    else:
        print(render_run(run, a.top))
        if run.model.source == "trace":
            print(render_import(run, a.top))
    return 0


def _cmd_rename(a) -> int:
    store.rename(a.run_id, a.label, a.runs_dir)
    print(f"renamed {a.run_id} to '{a.label}'")
    return 0


def _cmd_delete(a) -> int:
    store.delete(a.run_id, a.runs_dir)
    print(f"deleted {a.run_id}")
    return 0


def _cmd_sweep(a) -> int:
    from profiler.measure.sweep import sweep_and_save

    config = ProfileConfig(warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time)
    progress, close = progress_bar()
    try:
        result = sweep_and_save(a.model, a.batch_sizes, a.seq_lens, a.threads, a.dtypes, a.devices, config,
                                arch=a.arch, runs_dir=a.runs_dir, progress=progress)
    finally:
        close()
    if a.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    rows = [[str(p.batch_size), str(p.seq_len or ""), str(p.threads), p.dtype, p.device,
             _ms(p.median_ms) if not p.error else "", f"{_ms(p.p10_ms)}-{_ms(p.p90_ms)}" if not p.error else "",
             f"{p.throughput_per_s:,.1f}" if not p.error else "", _bytes(p.peak_memory_bytes) if not p.error else "",
             p.error[:60]] for p in result.points]
    print(f"sweep of {result.model} on {result.device_name}")
    print(format_table(rows, ["batch", "length", "threads", "dtype", "device", "median ms", "p10-p90 ms", "samples/s",
                              "peak memory", "problem"], left=(3, 4, 9)))
    for finding in result.findings:
        print(f"finding  {finding}")
    print(f"saved    sweep {result.id}")
    return 0


def _cmd_peaks(a) -> int:
    from profiler import devices
    from profiler.measure import peaks as peaks_mod

    if a.gpu:
        p = devices.spec_peaks(a.gpu)
        if p is None:
            raise OpLensError(f"no published spec for a GPU named '{a.gpu}'; known: {', '.join(devices.gpu_specs())}")
    else:
        progress, close = progress_bar()
        try:
            p = peaks_mod.get(a.device, refresh=a.refresh, progress=progress)
        finally:
            close()
    if a.json:
        out = p.to_dict()
        if not p.device.startswith("cuda"):  # GPU keys only with a GPU
            for k in ("h2d_pinned_gbs", "h2d_pageable_gbs", "d2h_pinned_gbs", "d2h_pageable_gbs"):
                out.pop(k)
        print(json.dumps(out, indent=1))
        return 0
    rows = [[label, f"{value:,.1f}", unit] for label, value, unit in (
        ("fp32 GEMM", p.fp32_gflops, "GFLOP/s"), ("bf16 GEMM", p.bf16_gflops, "GFLOP/s"),
        ("fp16 GEMM", p.fp16_gflops, "GFLOP/s"), ("int8 GEMM", p.int8_gops, "GOP/s"),
        ("memory bandwidth (triad)", p.mem_bw_gbs, "GB/s"), ("memory copy", p.copy_bw_gbs, "GB/s"),
        ("host->device, pinned", p.h2d_pinned_gbs, "GB/s"), ("host->device, pageable", p.h2d_pageable_gbs, "GB/s"),
        ("device->host, pinned", p.d2h_pinned_gbs, "GB/s"), ("device->host, pageable", p.d2h_pageable_gbs, "GB/s"))
        if value]
    what = "published spec, not measured" if p.source == "spec" else \
        f"measured {p.measured_at}, {p.threads} threads, torch {p.torch}"
    print(f"peaks of {p.name} ({p.device}; {what})")
    print(format_table(rows, ["limit", "value", "unit"], left=(0, 2)))
    for note in p.notes:
        print(f"note  {note}")
    return 0


def _cmd_report(a) -> int:
    from profiler.viewers import html_report as report

    if len(a.run_ids) > 2:
        raise OpLensError(f"report takes one run or two (base, new), not {len(a.run_ids)}")
    runs = [store.load(i, a.runs_dir) for i in a.run_ids]
    try:
        path = report.write(a.html, *runs)
    except OSError as exc:
        raise OpLensError(f"could not write {a.html}: {exc.strerror or exc}") from exc
    print(f"wrote {path}")
    return 0


def _cmd_tensorboard(a) -> int:
    from profiler.viewers import tensorboard

    tb = tensorboard.start(a.runs_dir, a.port)
    print(f"TensorBoard on {tb.logdir}: open {tb.url}#pytorch_profiler (Ctrl-C stops it)")
    try:
        tb.process.wait()
    finally:
        tb.stop()

def _cmd_explore(a) -> int:
    from profiler.measure import peaks as peaks_mod
    from profiler.viewers import model_explorer as graph_viewer

    run = store.load(a.run_id, a.runs_dir)
    if a.export:
        files = graph_viewer.export(run, a.export, peaks_mod.for_run(run))
        print(f"wrote {files.graph} and {len(files.overlays)} node-data overlays "
              f"({', '.join(p.name for p in files.overlays)}) to {a.export}")
        return 0
    viewer = graph_viewer.serve_run(run, peaks_mod.for_run(run), port=a.port)
    print(f"Model Explorer: open {viewer.url}\n(overlays: {', '.join(p.stem for p in viewer.files.overlays)}; "
          "Ctrl-C stops it)")
    try:
        viewer.process.wait()
    except KeyboardInterrupt:
        print("Model Explorer stopped")
    finally:
        viewer.stop()
    return 0


def _cmd_recommend(a) -> int:
    from optimizers import recommend as advice  # the CLI may reach the optimizers: apply runs their passes
    from profiler.analysis import recommend as rec_mod

    run = store.load(a.run_id, a.runs_dir)
    diagnosis = advice.why_slow(run, a.runs_dir)
    recs = diagnosis.recommendations
    if a.apply:
        progress, close = progress_bar(False if a.json else None)
        try:
            for r in recs:
                if r.passes:
                    advice.apply(r, run, a.runs_dir, a.warmup, a.repeats, progress=progress)
        finally:
            close()
    if a.json:
        print(json.dumps([rec_mod.as_row(r) for r in recs], indent=1))
        return 0
    roof = diagnosis.roofline
    print(f"why {run.model.name} is slow (run {run.id}, {run.device.name}, {run.config.dtype})")
    print(f"median {roof.measured_ms:.3g} ms; floor at peak {roof.floor_ms:.3g} ms; mostly {roof.verdict or '-'}-bound "
          f"({roof.dtype} ceilings, {roof.peaks_source})")
    for i, f in enumerate(diagnosis.findings, 1):
        print(f"finding {i}. {f.title}: {f.evidence}")
    if not recs:
        print("no rule fired: nothing stands out on the roofline")
    rows = [[str(i), r.title, "+".join(r.passes) or "-", f"{r.estimated_speedup:.2f}x",
             "-" if r.measured_speedup is None else f"{r.measured_speedup:.2f}x"] for i, r in enumerate(recs, 1)]
    if rows:
        print(format_table(rows, ["#", "recommendation", "passes", "estimated", "measured"], left=(1, 2)))
    for i, r in enumerate(recs, 1):
        print(f"{i}. evidence: {r.evidence}")
    return 0


COMMANDS = {"models": _cmd_models, "profile": _cmd_profile, "import": _cmd_import, "runs": _cmd_runs, "show": _cmd_show,
            "rename": _cmd_rename, "delete": _cmd_delete, "peaks": _cmd_peaks,
            "sweep": _cmd_sweep, "generate": _cmd_generate, "report": _cmd_report,
            "tensorboard": _cmd_tensorboard, "recommend": _cmd_recommend, "explore": _cmd_explore}


def main(argv: list[str] | None = None) -> int:
    argv, _ = strip_verbose(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ProfileCancelled:
        print("error: cancelled; nothing was saved", file=err())
        return 130
    except KeyboardInterrupt:
        print("\nerror: interrupted; nothing was saved", file=err())
        return 130
    except OpLensError as exc:
        print(f"error: {exc}", file=err())
        return 2
    except Exception as exc:  # noqa: BLE001 - never a bare traceback on the terminal
        return fail_unexpected(exc)
