"""Two runs side by side, below the operator level: kernels under their operator, transfers by direction, the GPU
timeline per step, and module own time. Pure functions over ProfileRun; analysis.compare puts them in a Comparison.

Alignment is module -> op -> kernel: module rows from the graph's nodes (live runs), operators by name, kernels by
name under the operator that launched them, so a kernel that moved to another operator shows as removed + new.
"""
from __future__ import annotations

from collections import defaultdict

from profiler.analysis.basis import basis
from profiler.schema import KernelDiff, MetricDiff, ProfileRun, TransferDiff

SAME_BAND = 0.05  # within +-5% counts as "same" (as analysis.SAME_BAND)

GPU_FIELDS = ("window_ms", "busy_ms", "idle_ms", "computation_ms", "comm_ms", "exposed_comm_ms", "memcpy_ms",
              "memset_ms", "idle_host_ms", "idle_sync_ms", "idle_other_ms", "launch_overhead_ms", "short_kernels")


def change_status(base: float | None, new: float | None, band: float = SAME_BAND) -> str:
    """'new', 'removed', 'faster', 'slower' or 'same' (within +-band of the base)."""
    if base is None:
        return "new"
    if new is None:
        return "removed"
    if new < base * (1 - band):
        return "faster"
    if new > base * (1 + band):
        return "slower"
    return "same"


def _by_change(rows: list, key=lambda r: r.delta_ms) -> list:
    return sorted(rows, key=lambda r: abs(key(r)), reverse=True)


def kernel_diff(base: ProfileRun, new: ProfileRun) -> list[KernelDiff]:
    """Per (operator, kernel name) device time of both runs, largest change first."""
    def totals(run: ProfileRun) -> dict[tuple[str, str], list]:
        out: dict[tuple[str, str], list] = {}
        for k in run.kernels:
            row = out.setdefault((k.op, k.name), [0.0, 0.0, k.kind])
            row[0] += k.time_ms
            row[1] += k.calls
        return out

    a, b = totals(base), totals(new)
    rows = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        kind = (x or y)[2]
        rows.append(KernelDiff(op=key[0], name=key[1], status=change_status(x and x[0], y and y[0]),
                               base_ms=x[0] if x else 0.0, new_ms=y[0] if y else 0.0,
                               delta_ms=(y[0] if y else 0.0) - (x[0] if x else 0.0),
                               base_calls=x[1] if x else 0.0, new_calls=y[1] if y else 0.0, kind=kind))
    return _by_change(rows)


def transfer_diff(base: ProfileRun, new: ProfileRun) -> list[TransferDiff]:
    """Copy time and bytes by direction in both runs, largest time change first."""
    def totals(run: ProfileRun) -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        scale = basis(run).op_scale  # each run's profiled times on its own median's basis
        for t in run.transfers:
            out[t.direction][0] += t.time_ms * scale
            out[t.direction][1] += t.bytes
        return out

    a, b = totals(base), totals(new)
    rows = [TransferDiff(direction=d, base_ms=a[d][0], new_ms=b[d][0], delta_ms=b[d][0] - a[d][0],
                         base_bytes=a[d][1], new_bytes=b[d][1]) for d in sorted(set(a) | set(b))]
    return _by_change(rows)


def gpu_diff(base: ProfileRun, new: ProfileRun) -> list[MetricDiff]:
    """The GPU timeline per step of both runs, field by field in GPU_FIELDS order; empty unless both have one."""
    if base.gpu is None or new.gpu is None:
        return []
    return [MetricDiff(name=f, base=getattr(base.gpu, f), new=getattr(new.gpu, f),
                       delta=getattr(new.gpu, f) - getattr(base.gpu, f)) for f in GPU_FIELDS]


def module_diff(base: ProfileRun, new: ProfileRun) -> list[MetricDiff]:
    """Own (exec + transfer) time per module path from the graph's nodes, each run's node times scaled to its median
    (profiler.analysis.basis), largest change first; empty when neither run knows its modules (imported traces)."""
    def totals(run: ProfileRun) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        scale = basis(run).graph_scale
        for n in run.graph.nodes:
            if n.module:
                out[n.module] += (n.exec_ms + n.trans_ms) * scale
        return out

    a, b = totals(base), totals(new)
    rows = [MetricDiff(name=m, base=a.get(m, 0.0), new=b.get(m, 0.0), delta=b.get(m, 0.0) - a.get(m, 0.0))
            for m in sorted(set(a) | set(b))]
    return _by_change(rows, key=lambda r: r.delta)


def by_op(kernels: list[KernelDiff]) -> list[tuple[str, float, float, list[KernelDiff]]]:
    """Kernel diffs grouped under their operator: (op, base_ms, new_ms, kernels), the operator whose kernel time
    changed most first and, within it, the kernel that changed most first. Across vendors kernel names differ, so
    an operator's rows are its old kernels (removed) beside its new ones: the operator subtotal is the comparison."""
    groups: dict[str, list[KernelDiff]] = defaultdict(list)
    for k in kernels:
        groups[k.op].append(k)
    out = [(op, sum(k.base_ms for k in ks), sum(k.new_ms for k in ks), _by_change(ks)) for op, ks in groups.items()]
    return sorted(out, key=lambda g: abs(g[2] - g[1]), reverse=True)
