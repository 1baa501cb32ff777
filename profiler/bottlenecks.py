"""Bottleneck findings: where a run's time goes, in plain language, each with its evidence and the usual fix.

Each rule is a small function over one `Evidence` (the run and its op frame) returning zero or more findings;
`RULES` lists them and `find` runs them all and ranks the findings. A new rule is one more function in `RULES`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from profiler.analysis import flop_rate, ops_frame
from profiler.schema import ProfileRun


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
    """What every rule reads: the run, its op frame, and the two denominators shares are taken of."""

    run: ProfileRun
    frame: pd.DataFrame
    wall_ms: float  # profiled wall time per inference (never 0)
    accounted_ms: float  # T_exec + T_trans (never 0)
    top: int = 3  # how many of the slowest compute ops may each be a finding

    @classmethod
    def of(cls, run: ProfileRun, top: int = 3) -> "Evidence":
        return cls(run=run, frame=ops_frame(run), wall_ms=run.totals.wall_ms or 1.0,
                   accounted_ms=(run.totals.exec_ms + run.totals.trans_ms) or 1.0, top=top)


Rule = Callable[[Evidence], list[Finding]]

# op family -> what usually fixes it (first match wins)
FIXES = [
    (("addmm", "mm", "matmul", "linear", "bmm", "baddbmm"),
     "Matrix multiplies dominate: try bf16 weights or autocast (fast on CPUs with AVX-512 BF16/AMX and on GPUs), "
     "dynamic int8 quantization of Linear layers, or low-rank factorisation."),
    (("conv", "convolution"),
     "Convolutions dominate: fold BatchNorm into the convs, use channels_last memory layout, reduced precision or "
     "static int8 quantization."),
    (("scaled_dot_product", "softmax", "attention"),
     "Attention dominates: use fused attention (attn_implementation='sdpa'), shorter sequences or reduced precision."),
    (("lstm", "rnn", "gru"),
     "Recurrent layers dominate: dynamic int8 quantization of LSTM/Linear, or a larger batch to fill the cores."),
    (("gelu", "relu", "tanh", "add", "mul", "layer_norm", "native_layer_norm", "dropout", "div", "sub"),
     "Element-wise / normalisation ops are memory-bound: fuse them with torch.compile (Inductor) or TorchScript "
     "freeze, or cut their bytes with reduced precision."),
    (("embedding", "index_select", "gather"),
     "Lookups dominate: these are memory-bound; reduced precision embeddings or a smaller vocabulary help."),
]
DEFAULT_FIX = "Check whether this op is needed at inference; torch.compile can often fuse or remove it."
# matched on the whole name (less leading/trailing "_": in-place and internal variants), not as a prefix: "add" as a
# prefix took aten::addmm for element-wise whenever its FLOPs were not counted (every imported trace)
MEMORY_BOUND = frozenset({"gelu", "relu", "tanh", "add", "mul", "layer_norm", "native_layer_norm", "dropout", "div",
                          "sub", "softmax", "copy", "clone", "contiguous", "cat", "where", "masked_fill", "exp",
                          "sigmoid", "silu", "pow", "mean"})

TOP_OP_SHARE = 0.05  # a compute op below this share of operator time is not worth a finding of its own
TRANSFER_SHARE = 0.03  # data movement from this share of operator time on
TINY_OP_MS = 0.01  # an op call under 10 us is mostly dispatch overhead
MEMORY_BOUND_SHARE = 0.10
LOW_RATE = 0.5  # whole-inference FLOP/s below this fraction of the best op's is "low"


def fix_for(op: str) -> str:
    key = op.lower().split("::")[-1]
    for names, fix in FIXES:
        if any(key == n or key.startswith(n) or n in key for n in names):
            return fix
    return DEFAULT_FIX


def is_memory_bound(op: str) -> bool:
    """An element-wise, normalisation or copy op: its time goes to moving bytes, not to arithmetic."""
    return op.split("::")[-1].strip("_") in MEMORY_BOUND


def slowest_ops(ev: Evidence) -> list[Finding]:
    """Each of the `top` slowest compute ops that holds at least TOP_OP_SHARE of operator time."""
    out = []
    for _, o in ev.frame[ev.frame["category"] == "compute"].head(ev.top).iterrows():
        if o["share"] < TOP_OP_SHARE:
            continue
        rate = f", achieving {o['gflops_per_s']:.1f} GFLOP/s" if o["gflops_per_s"] else ""
        out.append(Finding(
            title=f"{o['name']} takes {100 * o['share']:.0f}% of operator time", share=o["share"], kind="op",
            evidence=f"{o['time_ms']:.3g} ms per inference over {o['calls']:g} calls{rate}; most common shapes "
                     f"{o['input_shapes'][:120] or 'n/a'}", fix=fix_for(o["name"])))
    return out


def slowest_nodes(ev: Evidence) -> list[Finding]:
    """The five slowest graph nodes and their share of graph time (ranked at half weight: they overlap the ops)."""
    g = ev.run.graph
    nodes = sorted(g.nodes, key=lambda n: n.exec_ms + n.trans_ms, reverse=True)[:5]
    if not nodes or nodes[0].exec_ms + nodes[0].trans_ms <= 0:
        return []
    share = sum(n.exec_ms + n.trans_ms for n in nodes) / (g.exec_ms + g.trans_ms or 1.0)
    return [Finding(
        title=f"The 5 slowest graph nodes hold {100 * share:.0f}% of graph time", share=share * 0.5, kind="node",
        evidence="; ".join(f"{n.id} ({n.op} in {n.module or 'top level'}) {n.exec_ms + n.trans_ms:.3g} ms"
                           for n in nodes),
        fix="Start with the module these nodes live in; the Graph page shows them in context.",
        details=[n.id for n in nodes])]


def data_movement(ev: Evidence) -> list[Finding]:
    """T_trans from TRANSFER_SHARE of operator time on, with the fix for this device kind."""
    run = ev.run
    share = run.totals.trans_ms / ev.accounted_ms
    if share < TRANSFER_SHARE:
        return []
    if run.device.kind == "cuda":
        fix = ("Upload inputs from pinned memory with non_blocking=True, keep inputs and weights resident on the "
               "device, and avoid .cpu()/.item() inside forward.")
    else:
        fix = ("Copies and layout changes: avoid .contiguous()/permute round trips, use channels_last for conv "
               "nets, keep one dtype end to end; torch.compile can remove many copies.")
    moved = ", ".join(f"{t.direction} {t.bytes / 1e6:.2f} MB in {t.time_ms:.3g} ms" for t in run.transfers)
    return [Finding(title=f"Data movement (T_trans) is {100 * share:.0f}% of operator time", share=share,
                    kind="transfer", evidence=f"{run.totals.trans_label}: {moved}", fix=fix)]


def overhead(ev: Evidence) -> list[Finding]:
    """Many tiny op calls plus time outside any operator: the cost of dispatch rather than of work."""
    frame = ev.frame
    tiny = frame[(frame["calls"] > 0) & (frame["time_ms"] / frame["calls"].clip(lower=1) < TINY_OP_MS)]
    calls = float(frame["calls"].sum())
    unexplained = max(0.0, ev.run.totals.unexplained_ms) / ev.wall_ms
    tiny_share = float(tiny["time_ms"].sum()) / ev.accounted_ms
    if not ((calls >= 200 and tiny_share + unexplained >= 0.10) or unexplained >= 0.15):
        return []
    return [Finding(
        title=f"Many tiny ops and framework overhead: {calls:.0f} op calls per inference",
        share=tiny_share + unexplained, kind="overhead",
        evidence=f"{tiny['calls'].sum():.0f} calls take under 10 us each ({100 * tiny_share:.0f}% of op time); "
                 f"{100 * unexplained:.0f}% of wall time is outside any operator (Python, dispatch, launch gaps)",
        fix="Cut per-op overhead: torch.compile, TorchScript trace + freeze, CUDA graphs on a GPU, or a larger batch.")]


def memory_bound(ev: Evidence) -> list[Finding]:
    """Element-wise, normalisation and copy ops without FLOPs, from MEMORY_BOUND_SHARE of operator time on."""
    frame = ev.frame
    ops = frame[frame["name"].map(is_memory_bound) & (frame["flops"] == 0)]
    share = float(ops["time_ms"].sum()) / ev.accounted_ms
    if share < MEMORY_BOUND_SHARE:
        return []
    return [Finding(
        title=f"Memory-bound ops (no FLOPs to speak of) take {100 * share:.0f}% of operator time",
        share=share, kind="memory-bound", evidence=f"mostly {', '.join(ops.head(4)['name'])}",
        fix="Fuse element-wise chains (torch.compile / Inductor), and halve their bytes with bf16/fp16.")]


def low_flop_rate(ev: Evidence) -> list[Finding]:
    """The whole inference's achieved FLOP/s (analysis.flop_rate) below LOW_RATE of the best op's."""
    rate = flop_rate(ev.run)
    with_flops = ev.frame[ev.frame["flops"] > 0]
    best = float(with_flops["gflops_per_s"].max()) if len(with_flops) else 0.0
    if rate.flops <= 0 or best <= 0 or rate.gflops_per_s >= LOW_RATE * best:
        return []
    return [Finding(
        title=f"Low achieved FLOP/s: {rate.gflops_per_s:.1f} GFLOP/s over the whole inference",
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


def find(run: ProfileRun, top: int = 3) -> list[Finding]:
    """Every rule's findings, ranked by the share of time each concerns."""
    ev = Evidence.of(run, top)
    return sorted((f for rule in RULES for f in rule(ev)), key=lambda f: f.share, reverse=True)
