"""One run, one basis: the median of the unprofiled inferences is the time a person reads first ("per inference").
Every other time a page or the CLI shows either adds up to it or says, in its own line, what it measures and why.

A live run measures times three ways, each honest about something different:
- the **median**: unprofiled inferences, the latency a user gets;
- **operator times**: inferences run under torch.profiler, which adds its own cost to every operator (on a model of
  many tiny operators a profiled inference can take several times the median);
- **graph node times**: a separate run that times each node of the captured graph alone, with more cost again.
Operator and node times are shown *scaled to the median*: multiplied by one factor per source, so their shares are
kept and the parts add up to the median (operators plus what they leave unexplained; nodes to the operators' share).
An imported trace has no unprofiled inferences: its times are totals over the trace and are shown as they are.
The frames on this basis (operators, modules, the graph) are profiler.analysis.frames' `*_scaled` functions.
"""
from __future__ import annotations

from dataclasses import dataclass

from profiler.schema import ProfileRun

MIN_RATIO_SHOWN = 1.05  # below this the profiled and unprofiled times agree: no scaling line is worth reading


@dataclass(frozen=True)
class Basis:
    median_ms: float  # the run's per-inference time: median of the unprofiled inferences (a trace: one step)
    profiled_ms: float  # wall time of one profiled inference, which operator times add up to (with unexplained)
    explained_ms: float  # T_exec + T_trans in profiled inferences
    graph_ms: float  # Σ node time in the per-node timing (0: no timed graph)
    trace: bool  # an imported trace: operator times are totals over the trace, not per inference

    @property
    def op_scale(self) -> float:
        """Operator (profiled) times × op_scale read on the median's basis."""
        if self.trace or self.median_ms <= 0 or self.profiled_ms <= 0:
            return 1.0
        return self.median_ms / self.profiled_ms

    @property
    def overhead(self) -> float:
        """How much longer a profiled inference took than the median (1.0: no overhead, or unknown)."""
        return 1.0 / self.op_scale if self.op_scale > 0 else 1.0

    @property
    def graph_scale(self) -> float:
        """Node times × graph_scale: each node's share of what the operators explain, on the median's basis (for a
        trace, of the operators' totals)."""
        return self.explained_ms * self.op_scale / self.graph_ms if self.graph_ms > 0 else 1.0

    def ops(self, ms: float) -> float:
        return ms * self.op_scale

    def nodes(self, ms: float) -> float:
        return ms * self.graph_scale

    @property
    def scaled(self) -> bool:
        return not self.trace and self.overhead >= MIN_RATIO_SHOWN

    def per_inference_line(self) -> str:
        """The one line every page showing operator times carries: what they are and how they relate to the median."""
        if self.trace:
            return (f"Operator times are totals over the imported trace ({self.profiled_ms:.3g} ms of wall time), "
                    "not per inference.")
        if not self.scaled:
            return (f"Operator times are per inference and add up, with what they leave unexplained, to the "
                    f"{self.median_ms:.3g} ms median.")
        return (f"Operator times are scaled to the {self.median_ms:.3g} ms median (× {self.op_scale:.3g}): a profiled "
                f"inference took {self.profiled_ms:.3g} ms, {self.overhead:.2f}x the median, because the profiler "
                "adds its own cost to every operator. Shares are as measured.")

    def graph_line(self) -> str:
        """What the Graph page's node times are."""
        if self.graph_ms <= 0:
            return ""
        where = "of the operators' totals over the trace" if self.trace else f"of the {self.median_ms:.3g} ms median"
        return (f"Node times come from a separate run that times each node alone (Σ {self.graph_ms:.3g} ms there, "
                f"with its own overhead); shown here as each node's share {where} that the operators explain "
                f"({self.explained_ms * self.op_scale:.3g} ms, × {self.graph_scale:.3g}).")


def basis(run: ProfileRun) -> Basis:
    """The run's basis (see the module docstring)."""
    t, g = run.totals, run.graph
    trace = run.model.source == "trace"
    return Basis(median_ms=run.latency.median_ms, profiled_ms=t.wall_ms, explained_ms=t.exec_ms + t.trans_ms,
                 graph_ms=(g.exec_ms + g.trans_ms) if g.timed_nodes else 0.0, trace=trace)


def breakdown(run: ProfileRun) -> dict[str, float]:
    """T_exec, T_trans and what neither explains, on the median's basis: they add up to `wall`, the median (an
    imported trace: its wall time). The seeds' T = ΣT_exec + ΣT_trans against measured time."""
    b, t = basis(run), run.totals
    wall = t.wall_ms if b.trace else b.median_ms
    exec_ms, trans_ms = b.ops(t.exec_ms), b.ops(t.trans_ms)
    return {"T_exec": exec_ms, "T_trans": trans_ms, "unexplained": max(0.0, wall - exec_ms - trans_ms), "wall": wall}


def per_what(run: ProfileRun) -> str:
    """What an operator figure of `run` is over, in words: an imported trace's are totals."""
    return "over the trace" if basis(run).trace else "per inference"

