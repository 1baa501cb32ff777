"""Recommendations: rules over a run (its roofline, and a sweep when there is one), each with its evidence, the
passes that act on it and an estimated speedup from the roofline. Pure: the passes a rule may name come from the
caller, and so do the earlier estimate/measured pairs that scale its estimate. Rules that act on a finding (overhead,
data movement) read the finding's own definition and threshold (analysis/findings.py). Applying a recommendation
with proof and keeping its pair is optimizers/recommend.py.

Each rule is a small function Context -> Recommendation | None, in RULES; each is tested alone on hand-built runs.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from profiler import op_categories as oc
from profiler.analysis import basis as basis_mod
from profiler.analysis import findings, gpu_rules
from profiler.analysis import roofline as rl
from profiler.schema import Peaks, ProfileRun, Recommendation, Roofline, Sweep

MATMUL_SHARE = 0.30  # precision rules fire when matmul-class ops hold at least this share of the time
FAST_PRECISION = 1.5  # ... and the reduced-precision GEMM peak is at least this much above fp32's
MIN_GAIN = 1.0  # a rule whose roofline estimate is a slowdown is dropped (Conv-BN folding, never one, always stays)
BATCH_GAIN = 1.3  # larger-batch rule: a sweep point with at least this much more throughput
# an estimate "held" when the measured speedup is within this factor of it either way; the kept pairs then scale
# later estimates for those passes on this machine toward what was measured
ESTIMATE_FACTOR = 1.5


@dataclass
class Context:
    """What the rules read: the run, its roofline, the machine's peaks, a sweep of the model (optional), and the
    passes that exist (optimizers' registry)."""
    run: ProfileRun
    roof: Roofline
    peaks: Peaks
    sweep: Sweep | None = None
    passes: frozenset[str] = frozenset()
    gemm: Peaks | None = None  # GEMM rates on this model's own shapes (measure.peaks.model_gemm_rates), when timed

    @property
    def rates(self) -> Peaks:
        """The rates precision rules compare: on the model's own GEMM shapes when timed, else the machine's peaks."""
        return self.gemm or self.peaks

    def rates_source(self) -> str:
        return ("timed on this model's own GEMM shapes" if self.gemm is not None
                else "peak GEMMs (the model's shapes were not timed)")

    def ms(self, names: tuple[str, ...]) -> float:
        """Exec ms per inference of the ops whose name starts with one of `names`."""
        return sum(o.exec_ms for o in self.run.ops if oc.matches(o.name, names))

    @property
    def total_ms(self) -> float:
        """Time the shares are taken of: the roofline's accounted time (ops plus unexplained wall time)."""
        return sum(self.roof.time_by_bound.values()) or self.run.totals.wall_ms or 1.0


amdahl = rl.amdahl  # the rules' estimate (one definition, in roofline; gpu_rules uses it too)


def _precision_gain(ctx: Context, ops: tuple[str, ...] | None, factor: float,
                    byte_ratio: float) -> tuple[float, float]:
    """(share of time in the targeted matmul ops, estimated speedup) when they run `factor` times faster and move
    `byte_ratio` of their bytes (compute- and memory-bound ones only): each op's new time is max(its time / factor,
    its new memory roof)."""
    before = after = 0.0
    for p in ctx.roof.points:
        # overhead-bound matmuls would not get faster: their time is dispatch, not arithmetic
        if p.flops <= 0 or p.bound == "overhead" or (ops is not None and not oc.matches(p.name, ops)):
            continue
        before += p.time_ms
        after += max(p.time_ms / factor, p.memory_ms * byte_ratio)
    share = before / ctx.total_ms
    gain = ctx.total_ms / (ctx.total_ms - before + after) if before > 0 else 1.0
    return share, gain


def rule_bf16(ctx: Context) -> Recommendation | None:
    """fp32 matmul-bound on hardware with fast bf16 -> bf16 (autocast where bf16 weights are not wanted). Never on a
    CPU that emulates bf16, whatever a GEMM measured."""
    p = ctx.rates
    if ("bf16" in ctx.run.device.emulated or ctx.roof.dtype != "fp32" or not p.fp32_gflops
            or p.bf16_gflops < FAST_PRECISION * p.fp32_gflops):
        return None
    share, gain = _precision_gain(ctx, None, p.bf16_gflops / p.fp32_gflops, 0.5)
    if share < MATMUL_SHARE:
        return None
    passes = ["bf16"] if "bf16" in ctx.passes or not ctx.passes else ["autocast"]
    return Recommendation(rule="bf16", title="Run the matmuls in bf16", passes=passes, raw_estimate=gain,
                          evidence=f"fp32 run; matmul-class ops hold {share:.0%} of the time; bf16 GEMMs run at "
                                   f"{p.bf16_gflops:,.0f} GFLOP/s vs {p.fp32_gflops:,.0f} fp32 "
                                   f"({p.bf16_gflops / p.fp32_gflops:.1f}x, {ctx.rates_source()})")


def rule_int8(ctx: Context) -> list[Recommendation] | None:
    """int8 GEMMs measured fast on this machine and Linear-heavy -> int8: in PyTorch (accuracy-aware where that pass
    exists) and, where registered, in ONNX Runtime, whose int8 MatMuls keep more accuracy on a CPU without VNNI
    (7-bit activations in fbgemm). Measured capability, not CPU flags. Both are offered: applying them decides."""
    p = ctx.rates
    if ctx.roof.dtype != "fp32" or not p.fp32_gflops or p.int8_gops < FAST_PRECISION * p.fp32_gflops:
        return None
    share, gain = _precision_gain(ctx, oc.LINEAR, p.int8_gops / p.fp32_gflops, 0.25)
    if share < MATMUL_SHARE:
        return None
    evidence = (f"Linear ops hold {share:.0%} of the time; int8 GEMMs at {p.int8_gops:,.0f} GOP/s vs fp32 "
                f"{p.fp32_gflops:,.0f} ({p.int8_gops / p.fp32_gflops:.1f}x, {ctx.rates_source()}) on "
                f"{ctx.run.device.name}; accuracy is checked when applied")
    out = [Recommendation(rule="int8", title="Quantize the Linear layers to int8",
                          passes=["accuracy-int8"] if "accuracy-int8" in ctx.passes else ["dynamic-int8"],
                          raw_estimate=gain, evidence=evidence)]
    if "onnxruntime-int8" in ctx.passes and ctx.run.device.kind == "cpu":
        out.append(Recommendation(rule="int8-runtime", title="Run it in ONNX Runtime with int8 MatMuls",
                                  passes=["onnxruntime-int8"], raw_estimate=gain,
                                  evidence=evidence + "; ONNX Runtime also fuses attention and layer norms"))
    return out


def rule_overhead(ctx: Context) -> Recommendation | None:
    """Many tiny ops and overhead-bound -> compile / fusion (CUDA graphs on a GPU)."""
    share = findings.overhead_share(ctx.roof)  # the overhead finding's definition and threshold
    if share < findings.OVERHEAD_SHARE or ctx.run.gpu is not None:  # a GPU timeline: gpu_rules.rule_host_wait
        return None
    on_gpu = ctx.run.device.kind == "cuda"
    passes = ["cuda-graphs"] if on_gpu else ["torch-compile"]
    calls = sum(o.calls for o in ctx.run.ops if o.category == "compute")
    return Recommendation(rule="overhead", title="Overhead-bound: cut launches and dispatch "
                                                 f"({'CUDA graphs' if on_gpu else 'compile and fuse'})",
                          passes=passes, raw_estimate=amdahl(share, 2.0),  # assume half of the overhead goes
                          evidence=f"{share:.0%} of the time is overhead-bound (launch, dispatch, Python): "
                                   f"{calls:.0f} op calls {basis_mod.per_what(ctx.run)}, floor at peak "
                                   f"{ctx.roof.floor_ms:,.4g} ms vs measured {ctx.roof.measured_ms:,.4g} ms "
                                   f"({ctx.roof.measured_what})")


def rule_transfers(ctx: Context) -> Recommendation | None:
    """Large host <-> device transfer time -> pinned memory, non_blocking copies, resident inputs."""
    wall = ctx.run.totals.wall_ms
    moved = findings.host_device_ms(ctx.run)
    share = moved / wall if wall > 0 else 0.0
    # the data-movement finding's threshold, on its host<->device part (what pinning and residency act on)
    if share < findings.MOVEMENT_SHARE:
        return None
    return Recommendation(
        rule="transfers",
        title="Keep inputs on the device; pin and overlap copies",
        passes=["pinned-memory", "resident-inputs"],
        raw_estimate=amdahl(share, 5.0),
        evidence=f"host<->device copies take {moved:.3g} ms per inference ({share:.0%} of the wall time)",
    )


def rule_conv_bn(ctx: Context) -> Recommendation | None:
    """Conv followed by BatchNorm in inference -> fold BN into the conv."""
    bn = [o for o in ctx.run.ops if oc.matches(o.name, oc.BATCH_NORM)]
    if not bn or not any(oc.matches(o.name, oc.CONVOLUTION) for o in ctx.run.ops):
        return None
    bn_ms = ctx.ms(oc.BATCH_NORM)
    share = bn_ms / ctx.total_ms
    calls = max(o.calls for o in bn)
    return Recommendation(rule="conv-bn", title="Fold BatchNorm into the convolutions", passes=["conv-bn-fold"],
                          raw_estimate=amdahl(share, float("inf")) if share < 1 else 1.0,
                          evidence=f"{calls:.0f} batch-norm call(s) per inference after convolutions, "
                                   f"{bn_ms:.3g} ms ({share:.0%} of the time) that folding removes")


def rule_sdpa(ctx: Context) -> Recommendation | None:
    """Eager attention (softmax between two batched matmuls, no fused kernel) -> scaled_dot_product_attention."""
    names = {o.name for o in ctx.run.ops}
    if not names & set(oc.SOFTMAX):
        return None
    if not names & set(oc.BATCHED_MATMUL) or any(oc.matches(n, oc.ATTENTION) for n in names):
        return None
    attn_ms = ctx.ms(oc.BATCHED_MATMUL + oc.SOFTMAX)
    share = attn_ms / ctx.total_ms
    return Recommendation(rule="sdpa", title="Use fused attention (SDPA)", passes=["sdpa"],
                          raw_estimate=amdahl(share, 2.0),
                          evidence=f"eager attention: softmax between batched matmuls, {attn_ms:.3g} ms "
                                   f"({share:.0%} of the time), and no fused attention kernel ran")


def rule_batch(ctx: Context) -> Recommendation | None:
    """Low utilisation at a small batch -> a larger batch, from the sweep's throughput."""
    if ctx.sweep is None:
        return None
    b = ctx.run.config.batch_size
    ok = [p for p in ctx.sweep.points if not p.error and p.throughput_per_s > 0]
    here = [p for p in ok if p.batch_size == b]
    if not here:
        return None
    base = max(p.throughput_per_s for p in here)
    best = max(ok, key=lambda p: p.throughput_per_s)
    gain = best.throughput_per_s / base
    if best.batch_size <= b or gain < BATCH_GAIN:
        return None
    util = ctx.roof.floor_ms / ctx.roof.measured_ms if ctx.roof.measured_ms > 0 else 0.0
    return Recommendation(
        rule="batch",
        title=f"Batch more: {best.batch_size} instead of {b}",
        passes=[],
        raw_estimate=gain,
        evidence=f"at batch {b} the model runs at {util:.0%} of its roofline floor; sweep {ctx.sweep.id}: "
        f"{best.throughput_per_s:,.0f} samples/s at batch {best.batch_size} vs {base:,.0f} "
        f"(throughput, not latency)",
    )


Rule = Callable[[Context], "Recommendation | list[Recommendation] | None"]
RULES: list[Rule] = [rule_bf16, rule_int8, rule_overhead, rule_transfers, rule_conv_bn, rule_sdpa, rule_batch,
                     *gpu_rules.GPU_RULES]


# ---------------------------------------------------------------- which estimates held on this machine

def machine_key(run: ProfileRun) -> str:
    return f"{run.device.name}|{run.device.kind}|{run.device.threads} threads"


def scale(pairs: list[dict], machine: str, passes: list[str], model: str | None = None) -> float | None:
    """Median measured / estimated of earlier pairs for these passes on this machine (of this model's pairs when it
    has any: a pass's speedup depends on the shapes), or None without any."""
    mine = [p for p in pairs if p.get("machine") == machine and p.get("passes") == passes and p.get("estimated", 0) > 0]
    same_model = [p for p in mine if model is not None and p.get("model") == model]
    ratios = [p["measured"] / p["estimated"] for p in (same_model or mine)]
    return statistics.median(ratios) if ratios else None


# a run executed by another runtime (ONNX Runtime, OpenVINO): PyTorch passes do not act on what it measured
OTHER_RUNTIME_RULES = (rule_transfers, rule_batch)


def _fired(ctx: Context) -> list[Recommendation]:
    out = []
    for rule in OTHER_RUNTIME_RULES if ctx.run.versions.get("runtime") else RULES:
        got = rule(ctx)
        out += [got] if isinstance(got, Recommendation) else list(got or [])
    return [rec for rec in out if rec.raw_estimate >= MIN_GAIN]


def recommend(run: ProfileRun, peaks: Peaks, sweep: Sweep | None = None, pairs: list[dict] | None = None,
              passes: frozenset[str] = frozenset(), roof: Roofline | None = None,
              gemm: Peaks | None = None) -> list[Recommendation]:
    """The rules that fire over `run`, best estimated speedup first; estimates scaled by this machine's history
    (`pairs`: store.recommendation_pairs). `passes` are the pass names the rules may name (the optimizers' registry,
    from the caller; empty: each rule's default); `roof` saves computing the roofline again; `gemm` are GEMM rates
    timed on the model's own shapes (precision rules prefer them to the machine's peaks)."""
    ctx = Context(run=run, roof=roof or rl.roofline(run, peaks), peaks=peaks, sweep=sweep, passes=passes, gemm=gemm)
    out = _fired(ctx)
    machine = machine_key(run)
    for rec in out:
        factor = scale(pairs or [], machine, rec.passes, run.model.name)
        rec.estimated_speedup = rec.raw_estimate * factor if factor is not None else rec.raw_estimate
        if factor is not None:
            rec.evidence += f"; estimate scaled x{factor:.2f} by earlier measurements of {'+'.join(rec.passes)} here"
    return sorted(out, key=lambda r: -r.estimated_speedup)


def passed(rec: Recommendation) -> bool:
    """Applied, measured, and its outputs stayed within the tolerance."""
    return rec.measured_speedup is not None and bool((rec.measured_accuracy or {}).get("passed", True))


def held(rec: Recommendation) -> bool | None:
    """Whether the measured speedup came within ESTIMATE_FACTOR of the estimate; None before it is measured."""
    if rec.measured_speedup is None or rec.estimated_speedup <= 0:
        return None
    return 1 / ESTIMATE_FACTOR <= rec.measured_speedup / rec.estimated_speedup <= ESTIMATE_FACTOR


def rank_measured(recs: list[Recommendation]) -> list[Recommendation]:
    """Once applied, a measurement outranks an estimate: recommendations that passed their accuracy check first,
    fastest measured first; then those not measured, by estimate; those that failed accuracy last."""
    def key(r: Recommendation):
        if passed(r):
            return (0, -r.measured_speedup)
        if r.measured_speedup is None:
            return (1, -r.estimated_speedup)
        return (2, -r.measured_speedup)
    return sorted(recs, key=key)


def as_row(rec: Recommendation) -> dict:
    """The CLI's JSON shape: {title, evidence, passes, estimated_speedup, measured_speedup} (and the rest)."""
    return {"title": rec.title, "evidence": rec.evidence, "passes": rec.passes,
            "estimated_speedup": round(rec.estimated_speedup, 3),
            "measured_speedup": None if rec.measured_speedup is None else round(rec.measured_speedup, 3),
            "rule": rec.rule, "measured_accuracy": rec.measured_accuracy, "comparison_id": rec.comparison_id}


def points_rows(points: list, k: int = 25) -> list[dict]:
    """The roofline's top points as table rows, units in the headers."""
    return [{"operator": p.name, "bound": p.bound, "time (ms)": p.time_ms, "roof (ms)": p.roof_ms,
             "% of roof": p.percent_of_roof, "headroom (ms)": p.headroom_ms, "GFLOP/s": p.achieved_gflops,
             "GB/s": p.achieved_gbs, "FLOP/byte": p.intensity, "dtype": p.dtype, "calls": p.calls}
            for p in points[:k]]


def shape_rows(shapes: list, k: int = 100) -> list[dict]:
    """An imported trace's work per op and recorded signature as table rows, units in the headers."""
    return [{"operator": s.op, "shape": s.params or s.shape, "family": s.family or "(no formula)", "dtype": s.dtype,
             "calls": s.calls, "kernel ms": s.time_ms, "us per call (median)": s.median_us, "GFLOP per call":
             s.flops / 1e9 if s.known else None, "MiB per call": s.bytes / 2**20 if s.known else None,
             "FLOP/byte": s.flops / s.bytes if s.known and s.bytes else None,
             "TFLOP/s": s.tflops if s.known else None, "TB/s": s.tbs if s.known else None} for s in shapes[:k]]
