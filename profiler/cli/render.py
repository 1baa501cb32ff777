"""Plain-text renderings of a run for the command line: a profile, a generation, an imported trace."""
from __future__ import annotations

from profiler.analysis import basis
from profiler.analysis import frames as analysis
from profiler.analysis import tables
from profiler.console import format_table
from profiler.schema import ProfileRun
from profiler.stats import significant


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} GiB"


def render_run(run: ProfileRun, top: int = 15) -> str:
    """The profile summary; every time on the median's basis (profiler.analysis.basis), as the dashboard shows it."""
    t, lat, b = run.totals, run.latency, basis.basis(run)
    parts = basis.breakdown(run)
    total = t.exec_ms + t.trans_ms or 1.0
    rows = []
    for o in run.ops[:top]:
        own = o.exec_ms + o.trans_ms
        gflops = analysis.op_gflops_per_s(o) / (b.op_scale or 1.0)
        rows.append([o.name, f"{o.calls:g}", _ms(b.ops(o.exec_ms)), _ms(b.ops(o.trans_ms)), f"{100 * own / total:.1f}",
                     f"{gflops:.1f}" if gflops else "", (o.input_shapes[0] if o.input_shapes else "")[:48]])
    scope = "totals over the trace" if b.trace else "per inference, scaled to the median" if b.scaled else \
        "per inference"
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
    out.append(f"breakdown  T_exec {_ms(parts['T_exec'])} ms + T_trans {_ms(parts['T_trans'])} ms = "
               f"{100 * t.coverage:.1f}% of {_ms(parts['wall'])} ms {'(the trace)' if b.trace else '(the median)'}; "
               f"unexplained {_ms(parts['unexplained'])} ms")
    out.append(f"           T_trans here is {t.trans_label}")
    out.append(f"           {b.per_inference_line()}")
    rate = analysis.flop_rate(run)
    if rate.flops:
        out.append(f"work       {rate.flops / 1e9:.4g} GFLOP per inference, {rate.gflops_per_s:.1f} GFLOP/s achieved; "
                   f"{rate.coverage_text()}")
    if run.memory:
        out.append(f"memory     peak {_bytes(run.memory.peak_bytes)} ({run.memory.kind}), "
                   f"+{_bytes(run.memory.peak_bytes - run.memory.baseline_bytes)} during inference")
    g = run.graph
    out.append(f"graph      {g.method}: {len(g.nodes)} nodes, {g.timed_nodes} with measured time"
               + (f" ({g.note})" if g.note else ""))
    for tr in run.transfers:
        out.append(f"transfer   {tr.direction}: {tr.calls:g} copies, {_bytes(tr.bytes)}, {_ms(b.ops(tr.time_ms))} ms")
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
    return "\n".join(out + [""] + _generation_tables(run, top) + _generation_footer(run))


def _generation_tables(run: ProfileRun, top: int) -> list[str]:
    """Each phase against its roof, its top operators, and decode step time as the context grows."""
    g = run.generation
    out = []
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
    return out


def _generation_footer(run: ProfileRun) -> list[str]:
    g = run.generation
    ids = g.token_ids[0] if g.token_ids else []
    out = ["", f"tokens     {ids[:16]}{' ...' if len(ids) > 16 else ''} (sequence 0, greedy)"]
    out += [f"text       {' '.join(g.text.split())[:300]}"] if g.text else []
    out += [f"run        {run.id}"]
    if run.trace_path:
        out.append(f"trace      {run.trace_path}")
    out += [f"note       {n}" for n in run.notes]
    return out


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
                   f"(host wait {_ms(g.idle_host_ms)}, sync {_ms(g.idle_sync_ms)}, gaps under 30 us "
                   f"{_ms(g.idle_short_ms)}, other {_ms(g.idle_other_ms)})")
        out.append(f"           computation {_ms(g.computation_ms)} ms, communication {_ms(g.comm_ms)} "
                   f"(exposed {_ms(g.exposed_comm_ms)}), memcpy {_ms(g.memcpy_ms)} (exposed "
                   f"{_ms(g.exposed_memcpy_ms)}), memset {_ms(g.memset_ms)}")
        out.append(f"           launches {_ms(g.launch_cpu_ms)} ms of host time, launch-to-start median "
                   f"{_ms(g.launch_overhead_ms)} ms; {g.short_kernels:g} kernels under 10 us, "
                   f"{g.kernels_shorter_than_launch:g} shorter than their launch")
    if run.totals.flop_coverage is not None and run.shapes:
        out.append(f"work       FLOPs and bytes from recorded shapes explain {run.totals.flop_coverage:.0%} of the "
                   "compute kernel time (`profiler recommend` places each op on the roofline)")
    for r in run.ranks:
        out.append(
            f"rank {r.rank:<5} step {_ms(r.step_ms)} ms, computation {_ms(r.computation_ms)}, comm "
            f"{_ms(r.comm_ms)} ({100 * r.overlap:.0f}% overlapped; collectives: transfer {_ms(r.comm_transfer_ms)}, "
            f"waiting for other ranks {_ms(r.comm_sync_ms)}){'  STRAGGLER: ' + r.note if r.straggler else ''}"
        )
    v = run.validation
    if v is not None:
        out.append("read       " + ", ".join(f"{n} {k}" for k, n in sorted(v.read.items(), key=lambda x: -x[1])))
        for s in v.skipped:
            out.append(f"skipped    {s.count} {s.what}: {s.why}")
    return "\n".join(out)


def trace_work(run: ProfileRun, roof, top: int = 12) -> str:
    """An imported trace's work: each op on the roofline (bound, % of its roof) and the slowest signatures with the
    rates they reached; what no formula knows is listed with its time."""
    cov = run.totals.flop_coverage
    out = [f"work    FLOPs and bytes from recorded shapes explain "
           f"{'-' if cov is None else f'{cov:.0%}'} of the compute kernel time"]
    rows = [[p.name[:44], p.bound, p.dtype or "-", _ms(p.time_ms), _ms(p.roof_ms), f"{p.percent_of_roof:.1f}",
             f"{p.achieved_gflops / 1e3:,.2f}", f"{p.achieved_gbs / 1e3:,.3f}"] for p in roof.points[:top]]
    if rows:
        out += ["Operators on the roofline (totals over the trace)",
                format_table(rows, ["operator", "bound", "dtype", "ms", "roof ms", "% of roof", "TFLOP/s", "TB/s"],
                             left=(0, 1, 2))]
    known = [s for s in run.shapes if s.known][:top]
    if known:
        rows = [[s.op[:36], (s.params or s.shape)[:40], s.dtype, f"{s.calls:g}", _ms(s.time_ms),
                 f"{s.median_us:,.2f}", f"{s.flops / 1e9:,.4g}", f"{s.bytes / 2**20:,.4g}",
                 f"{s.flops / s.bytes:,.1f}" if s.bytes else "-", f"{s.tflops:,.2f}", f"{s.tbs:,.3f}"] for s in known]
        out += ["Slowest signatures (median call)", format_table(
            rows, ["operator", "shape", "dtype", "calls", "ms", "us/call", "GFLOP", "MiB", "FLOP/B", "TFLOP/s", "TB/s"],
            left=(0, 1, 2))]
    unknown = [s for s in run.shapes if not s.known][:5]
    if unknown:
        out.append("no formula: " + "; ".join(f"{s.op} {_ms(s.time_ms)} ms" for s in unknown))
    return "\n".join(out)


def render_training(run: ProfileRun, top: int = 10) -> str:
    """A training run: step time and its spread, the phases and categories (each adding up to the step), the
    input-pipeline verdict, memory by category at the peak, and the slowest operators."""
    t = run.training
    w = t.wall
    how = (f"{t.config.steps} steps recorded in the trace (its batch, optimizer and dtype are not recorded)"
           if t.source == "trace" else f"{t.config.steps} steps after {t.config.warmup} warm-up, batch "
           f"{t.config.batch_size}, optimizer {t.config.optimizer}, {t.config.dtype}")
    out = [f"training {run.model.name} on {run.device.name}: {how}",
           f"step       median {_ms(w.median)} ms, p90 {_ms(w.p90)}, spread (IQR) {_ms(w.iqr)} over {w.n} steps",
           "phases     " + ", ".join(f"{k} {_ms(v)}" for k, v in t.phases.items()) + " ms (medians; each step's add "
           "up to its wall time)",
           "categories " + ", ".join(f"{k} {_ms(v)}" for k, v in t.categories.items() if v > 0) + " ms",
           f"input      {t.verdict}"]
    m = t.memory
    if m is not None and m.peak_bytes:
        parts = ", ".join(f"{k} {_bytes(v)}" for k, v in sorted(m.peak_by_category.items(), key=lambda x: -x[1])
                          if v > 0)
        out.append(f"memory     peak {_bytes(m.peak_bytes)} during {m.peak_phase}, {m.peak_ms:.3g} ms into the step: "
                   f"{parts}")
    if t.losses:
        out.append("loss       " + " ".join(f"{x:.4g}" for x in t.losses))
    from profiler.analysis.training_rules import advice, how_to_apply

    for rec in advice(run):
        out.append(f"try        {rec.title} ({how_to_apply(run, rec)}): {rec.evidence}")
    rows = [[o.name[:60], f"{o.calls:g}", _ms(o.exec_ms), _ms(o.trans_ms)] for o in run.ops[:top]]
    if rows:
        out += ["Top operators " + ("(totals over the trace)" if t.source == "trace" else "per step"),
                format_table(rows, ["operator", "calls", "exec ms", "trans ms"])]
    out += [f"note       {n}" for n in run.notes]
    return "\n".join(out)
