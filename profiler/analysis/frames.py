"""Pure analyses over ProfileRun: data in, new data out. Nothing here draws, prints or touches Streamlit.

Modelled on HolisticTraceAnalysis: each function takes a run (or two) and returns a DataFrame or plain objects.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from profiler import stats
from profiler.analysis import basis as basis_mod
from profiler.analysis import diff
from profiler.schema import Comparison, GraphNode, LatencyStats, OpDiff, OpStat, ProfileRun

SAME_BAND = 0.05  # per-op changes within +-5% count as "same": below that is profiler noise


def ops_frame(run: ProfileRun) -> pd.DataFrame:
    """One row per operator with derived columns: own time, share of the total, achieved GFLOP/s."""
    rows = []
    total = (run.totals.exec_ms + run.totals.trans_ms) or 1.0
    for o in run.ops:
        own = o.exec_ms + o.trans_ms
        rows.append(
            {
                "name": o.name,
                "category": o.category,
                "calls": o.calls,
                "exec_ms": o.exec_ms,
                "trans_ms": o.trans_ms,
                "time_ms": own,
                "share": own / total,
                "host_ms": o.host_ms,
                "device_ms": o.device_ms,
                "flops": o.flops,
                "gflops_per_s": op_gflops_per_s(o),
                "flops_known": o.flops_known,
                "memory_bytes": o.memory_bytes,
                "input_shapes": " | ".join(o.input_shapes),
            }
        )
    cols = ["name", "category", "calls", "exec_ms", "trans_ms", "time_ms", "share", "host_ms", "device_ms", "flops",
            "gflops_per_s", "flops_known", "memory_bytes", "input_shapes"]
    return pd.DataFrame(rows, columns=cols)


def op_diff_frame(comp: Comparison, statuses: list[str] | None = None) -> pd.DataFrame:
    """A comparison's per-operator diff as a frame (largest change first), optionally only some statuses."""
    frame = pd.DataFrame([d.to_dict() for d in comp.ops], columns=["name", "status", "base_ms", "new_ms", "delta_ms",
                                                                   "ratio"])
    if statuses is not None:
        frame = frame[frame["status"].isin(statuses)]
    # an operator that is new or gone has no before/after ratio: blank, not 0.000
    frame.loc[frame["status"].isin(["new", "removed"]), "ratio"] = float("nan")
    return frame.reindex(frame["delta_ms"].abs().sort_values(ascending=False).index)


def op_gflops_per_s(op: OpStat) -> float:
    """One operator's achieved GFLOP/s: its FLOPs over its inclusive time (FLOPs sit on wrapper ops, whose self time
    excludes the kernels doing the work); 0 when either is unknown."""
    return op.flops / (op.total_ms * 1e6) if op.total_ms > 0 and op.flops else 0.0


def throughput_per_s(run: ProfileRun) -> float:
    """Samples per second: batch size over the median latency of the unprofiled iterations (the steady state a user
    gets; profiled iterations carry the profiler's overhead). 0 without a latency."""
    return stats.throughput_per_s(run.config.batch_size, run.latency.median_ms)


def flop_time_ms(run: ProfileRun) -> float:
    """The time the run's op FLOPs were done in. A live run's ops are per inference, so it is the median unprofiled
    latency, as for throughput; an imported trace's ops are totals over the whole trace, so it is the trace's wall
    time (its latency is one step, which would overstate the rate by the number of steps)."""
    return run.totals.wall_ms if run.model.source == "trace" else run.latency.median_ms


@dataclass
class FlopRate:
    """Work and the rate achieved, with the share of exec time whose FLOPs are known beside it."""

    flops: float  # per inference (an imported trace: over the trace)
    gflops_per_s: float  # flops / flop_time_ms(run)
    coverage: float | None  # share of exec time in ops whose FLOPs are known; None: a run from before it was measured

    def coverage_text(self) -> str:
        if self.coverage is None:
            return "FLOP coverage not measured (older run)"
        partial = "; the figure is partial" if self.coverage < 0.95 else ""
        return f"FLOPs known for {100 * self.coverage:.1f}% of exec time{partial}"


def flop_rate(run: ProfileRun) -> FlopRate:
    """Achieved FLOP/s of the whole run: the ops' FLOPs over flop_time_ms(run), always with its FLOP coverage. The
    one definition the Overview page, the CLI's summary and the bottleneck rules use."""
    flops = sum(o.flops for o in run.ops)
    time_ms = flop_time_ms(run)
    return FlopRate(flops=flops, gflops_per_s=flops / (time_ms * 1e6) if time_ms > 0 else 0.0,
                    coverage=run.totals.flop_coverage)


def filter_ops(frame: pd.DataFrame, name: str = "", shape: str = "", category: str = "all") -> pd.DataFrame:
    """Case-insensitive substring filters, as a person types them."""
    out = frame
    if name:
        out = out[out["name"].str.contains(name, case=False, regex=False)]
    if shape:
        out = out[out["input_shapes"].str.contains(shape, case=False, regex=False)]
    if category != "all":
        out = out[out["category"] == category]
    return out


def module_times(run: ProfileRun) -> pd.DataFrame:
    """Time by module hierarchy, for a treemap: one row per module path prefix with its own (self) time.

    Columns: id (path), parent, label, exec_ms, trans_ms, own_ms. Nodes without a module go to the root.
    """
    own: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for n in run.graph.nodes:
        path = n.module or ""
        own[path][0] += n.exec_ms
        own[path][1] += n.trans_ms
    ids = {""}
    for path in list(own):
        parts = path.split(".") if path else []
        for i in range(1, len(parts) + 1):
            ids.add(".".join(parts[:i]))
    rows = []
    root = run.model.name or "model"
    for path in sorted(ids):
        ex, tr = own.get(path, (0.0, 0.0))
        parent = "" if not path else (path.rsplit(".", 1)[0] if "." in path else "")
        rows.append(
            {
                "id": path or root,
                "parent": "" if not path else (parent or root),
                "label": path.rsplit(".", 1)[-1] if path else root,
                "exec_ms": ex,
                "trans_ms": tr,
                "own_ms": ex + tr,
            }
        )
    return pd.DataFrame(rows, columns=["id", "parent", "label", "exec_ms", "trans_ms", "own_ms"])


# ---------------------------------------------------------------- graph: collapse to modules, lay out

@dataclass
class GraphView:
    """A drawable graph: nodes (possibly module groups) with positions, and weighted edges."""

    nodes: list[dict]
    edges: list[dict]
    depth: int | None


def _group_of(node: GraphNode, depth: int | None) -> str:
    if depth is None or node.kind in ("placeholder", "output"):
        return node.id
    if not node.module:
        return node.id
    parts = node.module.split(".")
    return ".".join(parts[:depth]) if depth > 0 else (parts[0] if parts else node.id)


def collapse(run: ProfileRun, depth: int | None) -> GraphView:
    """Merge nodes to module groups at `depth` path components (None: every node). Edge weight is the transfer
    time of its source: data a copy node moved flows along its out-edges."""
    groups: dict[str, dict] = {}
    member: dict[str, str] = {}
    for n in run.graph.nodes:
        g = _group_of(n, depth)
        member[n.id] = g
        d = groups.setdefault(g, {"id": g, "ops": defaultdict(int), "count": 0, "exec_ms": 0.0, "trans_ms": 0.0,
                                  "flops": 0.0, "module": n.module if g != n.id else n.module, "kind": n.kind,
                                  "output_shape": n.output_shape, "output_dtype": n.output_dtype})
        d["ops"][n.op] += 1
        d["count"] += 1
        d["exec_ms"] += n.exec_ms
        d["trans_ms"] += n.trans_ms
        d["flops"] += n.flops
        d["output_shape"], d["output_dtype"] = n.output_shape, n.output_dtype  # a group's output is its last node's
    edges: dict[tuple[str, str], float] = {}
    by_id = {n.id: n for n in run.graph.nodes}
    for n in run.graph.nodes:
        for src in n.inputs:
            a, b = member.get(src), member[n.id]
            if a is None or a == b:
                continue
            edges[(a, b)] = edges.get((a, b), 0.0) + by_id[src].trans_ms
    nodes = []
    for g in groups.values():
        top = sorted(g["ops"].items(), key=lambda kv: -kv[1])
        g["op"] = top[0][0] if g["count"] == 1 else f"{g['count']} ops: " + ", ".join(f"{k} x{v}" for k, v in top[:3])
        g["ops"] = dict(g["ops"])
        nodes.append(g)
    view = GraphView(nodes=nodes, edges=[{"source": a, "target": b, "trans_ms": w} for (a, b), w in edges.items()],
                     depth=depth)
    layout(view)
    return view


def layout(view: GraphView) -> None:
    """Layered layout in place: x is the longest path from an input, y spreads each layer around zero. An input with
    no inputs of its own (a weight, an example input) sits one layer before its first consumer, not at x = 0: a
    model's hundreds of weights otherwise pile up on the left with edges across the whole graph."""
    order = [n["id"] for n in view.nodes]  # graph order is a topological order
    preds, succs = defaultdict(list), defaultdict(list)
    for e in view.edges:
        preds[e["target"]].append(e["source"])
        succs[e["source"]].append(e["target"])
    layer: dict[str, int] = {}
    for nid in order:
        layer[nid] = 1 + max((layer.get(p, 0) for p in preds[nid]), default=-1)
    for nid in order:
        if not preds[nid] and succs[nid]:
            layer[nid] = max(0, min(layer[s] for s in succs[nid]) - 1)
    rows: dict[int, int] = defaultdict(int)
    for n in view.nodes:
        x = layer[n["id"]]
        n["x"], n["y"] = x, rows[x]
        rows[x] += 1
    for n in view.nodes:  # centre each layer on y = 0
        n["y"] = n["y"] - (rows[n["x"]] - 1) / 2


def module_depths(run: ProfileRun) -> int:
    return max((len(n.module.split(".")) for n in run.graph.nodes if n.module), default=0)


FLAT_GRAPH_NODES = 150  # up to this many nodes a graph is shown node by node
MIN_GROUPS = 25  # a collapsed graph should still show at least this many groups


def default_depth(run: ProfileRun) -> int | None:
    """The module depth to show a graph at first: every node (None) when it is small enough to read, else the
    shallowest depth that keeps MIN_GROUPS groups, else the deepest there is."""
    if len(run.graph.nodes) <= FLAT_GRAPH_NODES:
        return None
    levels = module_depths(run)
    return next((d for d in range(1, levels + 1) if len(collapse(run, d).nodes) >= MIN_GROUPS), levels or None)


# ---------------------------------------------------------------- comparing two runs

def setup_differences(base: ProfileRun, new: ProfileRun) -> list[str]:
    pairs = [
        ("device", f"{base.device.kind} {base.device.name}", f"{new.device.kind} {new.device.name}"),
        ("threads", base.device.threads, new.device.threads),
        ("dtype", base.config.dtype, new.config.dtype),
        ("batch size", base.config.batch_size, new.config.batch_size),
        ("sequence/image size", base.config.seq_len, new.config.seq_len),
        ("torch", base.device.torch, new.device.torch),
    ]
    return [f"{what}: {a} vs {b}" for what, a, b in pairs if a != b]


def speedup(b: LatencyStats, n: LatencyStats) -> tuple[float, float, float]:
    """Speedup of n over b: the ratio of medians, and the lowest and highest ratio their 95% intervals allow."""
    return (b.median_ms / n.median_ms if n.median_ms else 0.0, b.ci_low_ms / n.ci_high_ms if n.ci_high_ms else 0.0,
            b.ci_high_ms / n.ci_low_ms if n.ci_low_ms else 0.0)


def compare(base: ProfileRun, new: ProfileRun) -> Comparison:
    """Speedup of `new` over `base` (ratio of medians, with the range their 95% intervals allow), a per-op diff, and
    below it (profiler.analysis.diff) per-kernel, transfer, GPU-timeline and module deltas, each largest change
    first."""
    b, n = base.latency, new.latency
    ratio, low, high = speedup(b, n)
    # each side on its own median's basis: the two runs' profiler overheads differ (a fused model has fewer, larger
    # ops), and the diff must agree with the ratio of medians above it
    sb, sn = basis_mod.basis(base).op_scale, basis_mod.basis(new).op_scale
    base_ops = {o.name: (o.exec_ms + o.trans_ms) * sb for o in base.ops}
    new_ops = {o.name: (o.exec_ms + o.trans_ms) * sn for o in new.ops}
    diffs = []
    for name in sorted(set(base_ops) | set(new_ops)):
        a, c = base_ops.get(name), new_ops.get(name)
        status = diff.change_status(a, c, SAME_BAND)
        a, c = a or 0.0, c or 0.0
        diffs.append(OpDiff(name=name, status=status, base_ms=a, new_ms=c, delta_ms=c - a, ratio=a / c if c else 0.0))
    diffs.sort(key=lambda d: abs(d.delta_ms), reverse=True)
    differences = setup_differences(base, new)
    return Comparison(base_id=base.id, new_id=new.id, speedup=ratio, speedup_low=low, speedup_high=high,
                      base_median_ms=b.median_ms, new_median_ms=n.median_ms, same_setup=not differences,
                      setup_differences=differences, ops=diffs, kernels=diff.kernel_diff(base, new),
                      transfers=diff.transfer_diff(base, new), gpu=diff.gpu_diff(base, new),
                      modules=diff.module_diff(base, new), verdict=stats.verdict(ratio, low, high),
                      load=stats.combine_loads(base.load, new.load))


def change_line(comp: Comparison) -> str:
    """How the per-operator diff adds up to the change in the median: the operators' part (each side on its own
    median's basis) and the rest, outside any operator. Without it a diff where every operator got faster sits
    beside a slower median (bert-tiny with dynamic int8: operators -0.12 ms, median +0.41 ms) unexplained."""
    total = comp.new_median_ms - comp.base_median_ms
    ops = sum(d.delta_ms for d in comp.ops)
    return (f"The median changed by {total:+.3g} ms: the operators below account for {ops:+.3g} ms, and time outside "
            f"any operator (Python and framework overhead between them) for {total - ops:+.3g} ms.")


def kernel_diff_frame(comp: Comparison) -> pd.DataFrame:
    """A comparison's kernels aligned op -> kernel: each operator's subtotal row (kernel "(all kernels)") followed by
    its kernels, the operator whose kernel time changed most first."""
    rows = []
    for op, a, c, ks in diff.by_op(comp.kernels):
        rows.append({"op": op, "name": "(all kernels)", "status": diff.change_status(a or None, c or None),
                     "base_ms": a, "new_ms": c, "delta_ms": c - a, "base_calls": sum(k.base_calls for k in ks),
                     "new_calls": sum(k.new_calls for k in ks)})
        rows += [{"op": op, "name": k.name, "status": k.status, "base_ms": k.base_ms, "new_ms": k.new_ms,
                  "delta_ms": k.delta_ms, "base_calls": k.base_calls, "new_calls": k.new_calls} for k in ks]
    return pd.DataFrame(rows, columns=["op", "name", "status", "base_ms", "new_ms", "delta_ms", "base_calls",
                                       "new_calls"])


# ---------------------------------------------------------------- the same frames on the median's basis

OP_TIME_COLUMNS = ("exec_ms", "trans_ms", "time_ms", "host_ms", "device_ms")


def ops_frame_scaled(run: ProfileRun) -> pd.DataFrame:
    """ops_frame on the median's basis (profiler.analysis.basis): time columns x op_scale (shares unchanged),
    GFLOP/s over the scaled times."""
    frame, s = ops_frame(run), basis_mod.basis(run).op_scale
    for col in OP_TIME_COLUMNS:
        frame[col] = frame[col] * s
    if s > 0:
        frame["gflops_per_s"] = frame["gflops_per_s"] / s
    return frame


def module_times_scaled(run: ProfileRun) -> pd.DataFrame:
    """module_times with node times scaled to the median (Basis.graph_scale), plus each module's share."""
    frame, s = module_times(run), basis_mod.basis(run).graph_scale
    for col in ("exec_ms", "trans_ms", "own_ms"):
        frame[col] = frame[col] * s
    total = frame["own_ms"].sum()
    frame["share"] = frame["own_ms"] / total if total > 0 else 0.0
    return frame


def collapse_scaled(run: ProfileRun, depth: int | None) -> GraphView:
    """collapse with node and edge times scaled to the median (Basis.graph_scale)."""
    view, s = collapse(run, depth), basis_mod.basis(run).graph_scale
    for n in view.nodes:
        n["exec_ms"], n["trans_ms"] = n["exec_ms"] * s, n["trans_ms"] * s
    for e in view.edges:
        e["trans_ms"] *= s
    return view
