"""What only a live run adds to the per-operator figures, and how they reconcile with wall time.

The times, calls and device work per operator come from the run's own trace (profiler.traces.figures, the
analysis imported traces get). This module fills in, from torch.profiler events of the untimed pass, the input
shapes, FLOPs, bytes and memory per op; host-side data movement on a CPU; T_exec + T_trans against wall time; and
per-tag times for graph nodes. Data-movement ops (copies, dtype/layout changes, uploads) go to T_trans, not T_exec.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

from profiler.measure import flops as flops_mod
from profiler.op_categories import is_transfer
from profiler.schema import OpStat, Totals, TransferStat

# Ops whose self time is moving or re-laying-out bytes rather than computing on them.
HOST_TRANSFER_LABEL = "host data movement (copies, dtype and layout changes; no device here)"
DEVICE_TRANSFER_LABEL = "host<->device and device copies (memcpy)"

_ELEMENT_BYTES = {"float": 4, "double": 8, "c10::Half": 2, "c10::BFloat16": 2, "long int": 8, "int": 4, "short int": 2,
                  "signed char": 1, "unsigned char": 1, "bool": 1, "c10::complex<float>": 8, "c10::complex<double>": 16,
                  "c10::Float8_e4m3fn": 1, "c10::Float8_e5m2": 1, "c10::qint8": 1, "c10::quint8": 1, "c10::qint32": 4}


def is_op_event(evt) -> bool:
    """A CPU-side operator event (not an annotation, a step marker, a memory record or a device kernel)."""
    if getattr(evt, "is_user_annotation", False):
        return False
    name = evt.name
    if name.startswith(("ProfilerStep#", "[memory]", "## ", "oplens")) or name == "[memory]":
        return False
    return str(getattr(evt, "device_type", "DeviceType.CPU")).endswith("CPU")


def _numel(shape) -> int:
    n = 1
    for d in shape or []:
        n *= int(d)
    return n


def copy_bytes(evt) -> int:
    """Bytes written by an aten::copy_ (its destination tensor); other ops move bytes through copy_ children."""
    if evt.name != "aten::copy_":
        return 0
    shapes, dtypes = evt.input_shapes or [], getattr(evt, "input_dtypes", None) or []
    if not shapes or not dtypes:
        return 0
    return _numel(shapes[0]) * _ELEMENT_BYTES.get(dtypes[0], 4)


def add_detail(ops: list[OpStat], detail: Iterable, on_cuda: bool, flops: flops_mod.OpFlops,
               moved: dict[str, float]) -> None:
    """Fill in what only the live run knows, from its untimed pass (one inference recorded with shapes and memory):
    input shapes, FLOPs, bytes moved and self allocated memory per op. The times come from the trace."""
    shapes = _shapes(detail)
    memory: dict[str, float] = defaultdict(float)
    for evt in detail:
        if is_op_event(evt):
            mem = getattr(evt, "self_device_memory_usage", 0) if on_cuda else evt.self_cpu_memory_usage
            memory[evt.name] += max(0, mem or 0)
    for o in ops:
        o.flops, o.flops_known = flops.flops.get(o.name, 0.0), o.name in flops.known
        o.bytes, o.memory_bytes = moved.get(o.name, 0.0), memory.get(o.name, 0.0)
        o.input_shapes = [s for s, _ in shapes.get(o.name, Counter()).most_common(5)]


def host_transfers(ops: list[OpStat], detail: Iterable) -> list[TransferStat]:
    """Host-side data movement per inference (no device): the time of the data-movement ops, one call per
    aten::copy_, and the bytes each copy_ wrote in the untimed pass that recorded shapes."""
    time_ms = sum(o.trans_ms for o in ops)
    if not time_ms:
        return []
    calls = sum(o.calls for o in ops if o.name == "aten::copy_")
    moved = sum(copy_bytes(evt) for evt in detail if is_op_event(evt))
    return [TransferStat(direction="host", calls=calls, bytes=moved, time_ms=time_ms,
                         bandwidth_gbps=moved / (time_ms * 1e6), label=HOST_TRANSFER_LABEL)]


def totals(ops: list[OpStat], wall_ms: float, on_cuda: bool, flop_coverage: float | None = None) -> Totals:
    """T_exec + T_trans against the wall time they should explain (coverage; the rest is unexplained)."""
    exec_ms, trans_ms = sum(o.exec_ms for o in ops), sum(o.trans_ms for o in ops)
    return Totals(wall_ms=wall_ms, exec_ms=exec_ms, trans_ms=trans_ms,
                  coverage=(exec_ms + trans_ms) / wall_ms if wall_ms else 0.0,
                  unexplained_ms=wall_ms - exec_ms - trans_ms,
                  trans_label=DEVICE_TRANSFER_LABEL if on_cuda else HOST_TRANSFER_LABEL, flop_coverage=flop_coverage)


def _shapes(events: Iterable) -> dict[str, Counter]:
    shapes: dict[str, Counter] = defaultdict(Counter)
    for evt in events:
        if is_op_event(evt) and evt.input_shapes:
            shapes[evt.name][str([list(s) for s in evt.input_shapes if s])] += 1
    return shapes


def nearest_tag(evt, prefix: str) -> str | None:
    """Name (minus prefix) of the innermost enclosing record_function whose name starts with `prefix`."""
    parent = evt.cpu_parent
    while parent is not None:
        if parent.name.startswith(prefix):
            return parent.name[len(prefix):]
        parent = parent.cpu_parent
    return None


def time_by_tag(events: Iterable, prefix: str, iterations: int, on_cuda: bool) -> dict[str, tuple[float, float, float]]:
    """Per tag: (exec_ms, trans_ms, flops) per inference, from the self times of the ops under its innermost tag."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for evt in events:
        if not is_op_event(evt):
            continue
        tag = nearest_tag(evt, prefix)
        if tag is None:
            continue
        t = (getattr(evt, "self_device_time_total", 0) or 0) if on_cuda else evt.self_cpu_time_total
        acc[tag][1 if is_transfer(evt.name) else 0] += t
        acc[tag][2] += getattr(evt, "flops", 0) or 0
    n = max(1, iterations)
    return {k: (v[0] / 1e3 / n, v[1] / 1e3 / n, v[2] / n) for k, v in acc.items()}
