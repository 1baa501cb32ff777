"""The one path from a trace to numbers, shared by imported traces and live runs (a live run reads its own trace
here): per-operator, kernel and transfer figures and the GPU timeline of one trace.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from profiler.schema import GpuTimeline, KernelStat, OpStat, ShapeStat, TransferStat
from profiler.traces import calls as calls_mod
from profiler.traces.attribution import (
    STEP_TRANSFER_LABEL,
    Attribution,
    attribute,
    kernel_stats,
    operator_stats,
    transfer_stats,
)
from profiler.traces.columns import LIVE_TAG, TraceData, load
from profiler.traces.timeline import gpu_timeline


@dataclass
class TraceFigures:
    """Per-operator, kernel and transfer figures of one trace (totals over it) and its GPU timeline (per step)."""

    ops: list[OpStat]
    transfers: list[TransferStat]
    kernels: list[KernelStat]
    gpu: GpuTimeline | None
    # per OpLens annotation in a live run's trace (oplens.prefill -> "prefill"): the operators inside it
    tagged: dict[str, list[OpStat]] = field(default_factory=dict)
    shapes: list[ShapeStat] = field(default_factory=list)  # work per op and recorded signature, most time first
    flop_coverage: float | None = None  # explained share of the compute time (profiler.traces.calls.coverage)

    def per_step(self, steps: int) -> TraceFigures:
        """The totals divided by `steps` (a live run's recorded inferences); the timeline is per step already."""
        n = max(1, steps)

        def ops(stats: list[OpStat]) -> list[OpStat]:
            return [replace(o, calls=o.calls / n, exec_ms=o.exec_ms / n, trans_ms=o.trans_ms / n, host_ms=o.host_ms / n,
                            device_ms=o.device_ms / n, total_ms=o.total_ms / n, flops=o.flops / n) for o in stats]

        return TraceFigures(
            ops=[replace(o, bytes=o.bytes / n) for o in ops(self.ops)],
            transfers=[replace(t, calls=t.calls / n, bytes=t.bytes / n, time_ms=t.time_ms / n,
                               op_ms={k: v / n for k, v in t.op_ms.items()}, label=STEP_TRANSFER_LABEL)
                       for t in self.transfers],
            kernels=[replace(k, calls=k.calls / n, time_ms=k.time_ms / n) for k in self.kernels],
            gpu=self.gpu, tagged={tag: ops(stats) for tag, stats in self.tagged.items()}, shapes=self.shapes,
            flop_coverage=self.flop_coverage)


def figures(d: TraceData, a: Attribution) -> TraceFigures:
    """The one place per-op, kernel, transfer and GPU-timeline figures come from, for imported traces and live runs
    alike (a live run reads its own trace here); device figures only when the trace has device events."""
    on_gpu = bool(len(d.device["ts"]))
    cw = calls_mod.call_work(d, a)
    recorded = bool(len(d.calls)) or bool((d.ops["flops"] > 0).any())
    per_name = calls_mod.per_name(d, cw) if recorded else None
    return TraceFigures(ops=operator_stats(d, a, on_gpu, work=per_name),
                        transfers=transfer_stats(d, a) if on_gpu else [],
                        kernels=kernel_stats(d, a) if on_gpu else [], gpu=gpu_timeline(d, a) if on_gpu else None,
                        tagged=_tagged_operator_stats(d, a, on_gpu),
                        shapes=calls_mod.shape_stats(d, cw) if recorded else [],
                        flop_coverage=calls_mod.coverage(d, a, cw, on_gpu)[0] if recorded else None)


def _tagged_operator_stats(d: TraceData, a: Attribution, on_gpu: bool) -> dict[str, list[OpStat]]:
    """operator_stats of the ops inside each OpLens annotation (all annotations of one name together)."""
    tags, ops = d.live_tags, d.ops
    inside: dict[str, np.ndarray] = {}
    for n, s, du, t in zip(tags["name"].tolist(), tags["ts"].tolist(), tags["dur"].tolist(), tags["thread"].tolist()):
        mask = inside.setdefault(d.names[n][len(LIVE_TAG):], np.zeros(len(ops["ts"]), dtype=bool))
        mask |= (ops["thread"] == t) & (ops["ts"] >= s) & (ops["ts"] + ops["dur"] <= s + du)
    return {tag: operator_stats(d, a, on_gpu, only=mask) for tag, mask in inside.items()}


def trace_figures(path: str | Path) -> TraceFigures:
    """figures() of one trace file; TraceFormatError when it is not a readable trace."""
    d = load(Path(path))
    return figures(d, attribute(d))
