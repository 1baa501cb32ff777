"""Findings: where a run's time goes, in plain language, each with its evidence and the usual fix. One definition
of each finding (data movement, overhead, memory-bound, ...), shared with the recommendation rules
(analysis/recommend.py), which act on the same definitions with the same thresholds: the Why slow page and
`profiler recommend` show one engine's answer (analysis/why_slow.py), so two screens cannot disagree.

Each rule is a small function over one `Evidence` (the run, its op frame and its roofline) returning zero or more
findings; `RULES` lists them and `find` runs them all and ranks them. A new rule is one more function in `RULES`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from profiler import op_categories as oc
from profiler.analysis import roofline as rl
from profiler.analysis import basis as basis_mod
from profiler.analysis.frames import flop_rate, ops_frame_scaled
from profiler.schema import ProfileRun, Roofline


@dataclass
class Finding:
    title: str
    share: float  # fraction of the time it concerns, used for ranking
    evidence: str
    fix: str
    kind: str  # "op", "node", "transfer", "overhead", "memory-bound", "flops", "noise"
    details: list[str] = field(default_factory=list)


@dataclass
class Evidence:
    """What every rule reads: the run, its op frame, its roofline, and the denominator op shares are taken of."""

    run: ProfileRun
    frame: pd.DataFrame
    roof: Roofline
    accounted_ms: float  # T_exec + T_trans (never 0)
    top: int = 3  # how many of the slowest compute ops may each be a finding

    @classmethod
    def of(cls, run: ProfileRun, roof: Roofline, top: int = 3) -> "Evidence":
        return cls(run=run, frame=ops_frame_scaled(run), roof=roof,
                   accounted_ms=(run.totals.exec_ms + run.totals.trans_ms) or 1.0, top=top)


Rule = Callable[[Evidence], list[Finding]]

# ---------------------------------------------------------------- the definitions (rules and findings share them)

MOVEMENT_SHARE = 0.10  # data movement from this share of the per-inference (profiled wall) time on
OVERHEAD_SHARE = 0.30  # overhead-bound (launch, dispatch, Python) from this share of the roofline's time on
MEMORY_BOUND_SHARE = 0.10  # memory-bound operators from this share of the roofline's time on
TOP_OP_SHARE = 0.05  # a compute op below this share of operator time is not worth a finding of its own
LOW_RATE = 0.5  # whole-inference FLOP/s below this fraction of the best op's is "low"
HOST_DEVICE = ("H2D", "D2H")


def host_device_ms(run: ProfileRun) -> float:
    """Time per inference in host<->device copies (what pinning and residency act on)."""
    return sum(t.time_ms for t in run.transfers if t.direction in HOST_DEVICE)


def movement_ms(run: ProfileRun) -> float:
    """Time per inference moving data: T_trans of the operators, or the host<->device copies when they are more
    (a GPU run's input upload happens outside any operator)."""
    return max(run.totals.trans_ms, host_device_ms(run))


def movement_share(run: ProfileRun) -> float:
    """movement_ms as a share of the profiled wall time per inference."""
    wall = run.totals.wall_ms
    return movement_ms(run) / wall if wall > 0 else 0.0


def overhead_share(roof: Roofline) -> float:
    """Share of the roofline's time that is overhead-bound: tiny operators far from their roof, and wall time no
    operator accounts for."""
    return rl.share(roof, "overhead")


def memory_bound_share(roof: Roofline) -> float:
    return rl.share(roof, "memory")


# op family -> what usually fixes it
FIXES = {
    "matmul": "Matrix multiplies dominate: try reduced precision (bf16 where this CPU or GPU runs it natively), int8 "
              "quantization of the Linear layers, or low-rank factorisation.",
    "convolution": "Convolutions dominate: fold BatchNorm into the convs, use channels_last memory layout, reduced "
                   "precision or static int8 quantization.",
    "batch_norm": "Batch norms after convolutions: fold them into the convs' weights (conv-bn-fold).",
    "attention": "Attention dominates: use fused attention (attn_implementation='sdpa'), shorter sequences or reduced "
                 "precision.",
    "recurrent": "Recurrent layers dominate: dynamic int8 quantization of LSTM/Linear, or a larger batch to fill the "
                 "cores.",
    "elementwise": "Element-wise / normalisation ops are memory-bound: fuse them with torch.compile (Inductor) or "
                   "TorchScript freeze, or cut their bytes with reduced precision.",
    "lookup": "Lookups dominate: these are memory-bound; reduced precision embeddings or a smaller vocabulary help.",
    "transfer": "Copies and layout changes: avoid .contiguous()/permute round trips and dtype round trips; "
                "torch.compile can remove many copies.",
}
DEFAULT_FIX = "Check whether this op is needed at inference; torch.compile can often fuse or remove it."


def fix_for(op: str) -> str:
    return FIXES.get(oc.family(op) or "", DEFAULT_FIX)


# ---------------------------------------------------------------- the rules

SHAPES_SHOWN = 2  # input-shape lists quoted whole in a finding; the rest counted


def _shapes(joined: str) -> str:
    """The first SHAPES_SHOWN input-shape lists of an operator, whole (a list cut mid-way reads as a wrong shape),
    and how many more there are."""
    shapes = [x for x in joined.split(" | ") if x]
    if not shapes:
        return "n/a"
    more = len(shapes) - SHAPES_SHOWN
    return " | ".join(shapes[:SHAPES_SHOWN]) + (f" (and {more} more)" if more > 0 else "")


def slowest_ops(ev: Evidence) -> list[Finding]:
    """Each of the `top` slowest compute ops that holds at least TOP_OP_SHARE of operator time."""
    out = []
    for _, o in ev.frame[ev.frame["category"] == "compute"].head(ev.top).iterrows():
        if o["share"] < TOP_OP_SHARE:
            continue
        rate = f", achieving {o['gflops_per_s']:.1f} GFLOP/s" if o["gflops_per_s"] else ""
        out.append(Finding(
            title=f"{o['name']} takes {100 * o['share']:.0f}% of operator time", share=o["share"], kind="op",
            evidence=f"{o['time_ms']:.3g} ms {basis_mod.per_what(ev.run)} in {o['calls']:g} calls{rate}; most "
                     f"common shapes {_shapes(o['input_shapes'])}", fix=fix_for(o["name"])))
    return out


def slowest_nodes(ev: Evidence) -> list[Finding]:
    """The five slowest graph nodes and their share of graph time (ranked at half weight: they overlap the ops)."""
    g, scale = ev.run.graph, basis_mod.basis(ev.run).graph_scale
    nodes = sorted(g.nodes, key=lambda n: n.exec_ms + n.trans_ms, reverse=True)[:5]
    if not nodes or nodes[0].exec_ms + nodes[0].trans_ms <= 0:
        return []
    share = sum(n.exec_ms + n.trans_ms for n in nodes) / (g.exec_ms + g.trans_ms or 1.0)
    return [Finding(
        title=f"The 5 slowest graph nodes hold {100 * share:.0f}% of graph time", share=share * 0.5, kind="node",
        evidence="; ".join(f"{n.id} ({n.op} in {n.module or 'top level'}) {(n.exec_ms + n.trans_ms) * scale:.3g} ms"
                           for n in nodes) + " (scaled to the median)",
        fix="Start with the module these nodes live in; the Graph page shows them in context.",
        details=[n.id for n in nodes])]


def data_movement(ev: Evidence) -> list[Finding]:
    """Data movement (movement_share) from MOVEMENT_SHARE of the wall time on, with the fix for this device."""
    run = ev.run
    share = movement_share(run)
    if share < MOVEMENT_SHARE:
        return []
    if run.device.kind == "cuda":
        fix = ("Upload inputs from pinned memory with non_blocking=True, keep inputs and weights resident on the "
               "device, and avoid .cpu()/.item() inside forward.")
    else:
        fix = FIXES["transfer"] + " Use channels_last for conv nets and keep one dtype end to end."
    b = basis_mod.basis(run)
    moved = ", ".join(f"{t.direction} {t.bytes / 1e6:.2f} MB in {b.ops(t.time_ms):.3g} ms" for t in run.transfers)
    whole = basis_mod.breakdown(run)["wall"]
    return [Finding(title=f"Data movement is {100 * share:.0f}% of the time per inference", share=share,
                    kind="transfer", evidence=f"{b.ops(movement_ms(run)):.3g} ms of {whole:.3g} ms "
                                              f"{'in the trace' if b.trace else 'per inference (the median)'}; "
                                              f"{run.totals.trans_label}: {moved or 'no transfers listed'}", fix=fix)]


def overhead(ev: Evidence) -> list[Finding]:
    """Overhead-bound time (overhead_share) from OVERHEAD_SHARE on: the cost of dispatch rather than of work."""
    share = overhead_share(ev.roof)
    if share < OVERHEAD_SHARE:
        return []
    run = ev.run
    calls = sum(o.calls for o in run.ops if o.category == "compute")
    unexplained = max(0.0, run.totals.unexplained_ms) / (run.totals.wall_ms or 1.0)
    on_gpu = run.device.kind == "cuda"
    return [Finding(
        title=f"Overhead-bound: {100 * share:.0f}% of the time is launch, dispatch and Python",
        share=share, kind="overhead",
        evidence=f"{calls:.0f} op calls {basis_mod.per_what(run)}; "
                 f"{100 * unexplained:.0f}% of the time is outside any operator; floor at peak "
                 f"{ev.roof.floor_ms:,.4g} ms vs measured {ev.roof.measured_ms:,.4g} ms ({ev.roof.measured_what})",
        fix="Cut per-op overhead: " + ("CUDA graphs, " if on_gpu else "") + "torch.compile, TorchScript trace + "
            "freeze, or a larger batch.")]


def memory_bound(ev: Evidence) -> list[Finding]:
    """Memory-bound operators on the roofline (memory_bound_share) from MEMORY_BOUND_SHARE on."""
    share = memory_bound_share(ev.roof)
    if share < MEMORY_BOUND_SHARE:
        return []
    names = [p.name for p in ev.roof.points if p.bound == "memory"][:4]
    return [Finding(
        title=f"Memory-bound operators take {100 * share:.0f}% of the time",
        share=share, kind="memory-bound", evidence=f"mostly {', '.join(names)}",
        fix="Fuse element-wise chains (torch.compile / Inductor), and halve their bytes with reduced precision.")]


def low_flop_rate(ev: Evidence) -> list[Finding]:
    """The whole inference's achieved FLOP/s (frames.flop_rate) below LOW_RATE of the best op's."""
    rate = flop_rate(ev.run)
    with_flops = ev.frame[ev.frame["flops"] > 0]
    best = float(with_flops["gflops_per_s"].max()) if len(with_flops) else 0.0
    if rate.flops <= 0 or best <= 0 or rate.gflops_per_s >= LOW_RATE * best:
        return []
    return [Finding(
        title=f"Low achieved FLOP/s: {rate.gflops_per_s:.1f} GFLOP/s over the whole "
              f"{'trace' if basis_mod.basis(ev.run).trace else 'inference'}",
        share=1 - rate.gflops_per_s / best, kind="flops",
        evidence=f"the best op reaches {best:.1f} GFLOP/s, so time outside the big matmuls/convs drags the average "
                 f"down ({rate.coverage_text()})",
        fix="Shrink what is not a matmul/conv (fusion, fewer copies) or raise the work per call (batch size).")]


def noisy_timing(ev: Evidence) -> list[Finding]:
    """A noisy or unreliable latency measurement (ranked last: it concerns no time, only trust)."""
    lat = ev.run.latency
    if lat.noise == "ok":
        return []
    return [Finding(
        title=f"Timing is {lat.noise}", share=0.0, kind="noise",
        evidence=f"IQR {lat.iqr_ms:.3g} ms on a median of {lat.median_ms:.3g} ms",
        fix="Close other programs, raise repeats, and compare runs only when their intervals do not overlap.")]


RULES: list[Rule] = [slowest_ops, slowest_nodes, data_movement, overhead, memory_bound, low_flop_rate, noisy_timing]


def find(run: ProfileRun, roof: Roofline, top: int = 3) -> list[Finding]:
    """Every rule's findings over the run and its roofline, ranked by the share of time each concerns."""
    ev = Evidence.of(run, roof, top)
    return sorted((f for rule in RULES for f in rule(ev)), key=lambda f: f.share, reverse=True)
