"""torch.profiler events -> per-operator statistics (OpStat) and data movement (TransferStat).

Each op's exec time is its *self* time, so summing over ops never double counts nested calls. On a GPU the
timing device is the GPU (kernel time launched by the op); on the CPU it is host time. Data-movement ops
(copies, dtype/layout changes, uploads) go to T_trans instead of T_exec.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

from . import flops as flops_mod
from .schema import OpStat, Totals, TransferStat

# Ops whose self time is moving or re-laying-out bytes rather than computing on them.
TRANSFER_OPS = frozenset({
    "aten::copy_", "aten::clone", "aten::contiguous", "aten::to", "aten::_to_copy", "aten::_copy_from",
    "aten::_copy_from_and_resize", "aten::pin_memory", "aten::_pin_memory", "aten::to_dense", "aten::to_mkldnn",
    "aten::_to_dense", "aten::copy", "aten::lift_fresh_copy",
})
HOST_TRANSFER_LABEL = "host data movement (copies, dtype and layout changes; no device here)"
DEVICE_TRANSFER_LABEL = "host<->device and device copies (memcpy)"

_ELEMENT_BYTES = {"float": 4, "double": 8, "c10::Half": 2, "c10::BFloat16": 2, "long int": 8, "int": 4, "short int": 2,
                  "signed char": 1, "unsigned char": 1, "bool": 1, "c10::complex<float>": 8, "c10::complex<double>": 16,
                  "c10::Float8_e4m3fn": 1, "c10::Float8_e5m2": 1, "c10::qint8": 1, "c10::quint8": 1, "c10::qint32": 4}


def is_transfer(name: str) -> bool:
    return name in TRANSFER_OPS


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


def copy_direction(evt, on_cuda: bool) -> str:
    """Direction of an aten::copy_ from the memcpy kernels it launched (H2D/D2H/D2D), or 'host' without a GPU."""
    if not on_cuda:
        return "host"
    for k in getattr(evt, "kernels", []) or []:
        name = getattr(k, "name", "")
        for tag, direction in (("HtoD", "H2D"), ("DtoH", "D2H"), ("DtoD", "D2D")):
            if tag in name:
                return direction
    return "D2D" if (getattr(evt, "self_device_time_total", 0) or 0) > 0 else "host"


def op_stats(events: Iterable, iterations: int, on_cuda: bool, detail: Iterable | None = None,
             detail_iterations: int = 1, flops: flops_mod.OpFlops | None = None) -> list[OpStat]:
    """Aggregate self times and memory by op name, per inference, slowest first.

    Shapes come from `detail` (a separate pass with record_shapes, which slows ops by 10-20% and so stays out of the
    timed pass); without it, from `events`. FLOPs per inference are `flops` (flops.count_events), or counted here
    from those same events.
    """
    source = events if detail is None else detail
    scale = iterations if detail is None else detail_iterations
    shapes = _shapes(source)
    if flops is None:
        flops = flops_mod.count_events(source, iterations=scale, is_op=is_op_event)
    acc: dict[str, dict] = defaultdict(lambda: {"calls": 0, "host": 0.0, "device": 0.0, "total": 0.0, "mem": 0.0})
    for evt in events:
        if not is_op_event(evt):
            continue
        a = acc[evt.name]
        a["calls"] += 1
        a["host"] += evt.self_cpu_time_total
        a["device"] += getattr(evt, "self_device_time_total", 0) or 0
        a["total"] += (getattr(evt, "device_time_total", 0) or 0) if on_cuda else evt.cpu_time_total
        mem = (getattr(evt, "self_device_memory_usage", 0) if on_cuda else evt.self_cpu_memory_usage) or 0
        a["mem"] += max(0, mem)
    n = max(1, iterations)
    out = []
    for name, a in acc.items():
        timed = (a["device"] if on_cuda else a["host"]) / 1e3 / n  # us -> ms per inference
        transfer = is_transfer(name)
        out.append(OpStat(
            name=name, calls=a["calls"] / n, exec_ms=0.0 if transfer else timed, trans_ms=timed if transfer else 0.0,
            host_ms=a["host"] / 1e3 / n, device_ms=a["device"] / 1e3 / n, total_ms=a["total"] / 1e3 / n,
            flops=flops.flops.get(name, 0.0), flops_known=name in flops.known, memory_bytes=a["mem"] / n,
            input_shapes=[s for s, _ in shapes.get(name, Counter()).most_common(5)],
            category="transfer" if transfer else "compute"))
    out.sort(key=lambda o: o.exec_ms + o.trans_ms, reverse=True)
    return out


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


def _direction(evt, on_cuda: bool) -> str:
    if not on_cuda:
        return "host"
    return copy_direction(evt, True) if evt.name == "aten::copy_" else _parent_direction(evt)


def transfer_stats(events: Iterable, iterations: int, on_cuda: bool, detail: Iterable | None = None,
                   detail_iterations: int = 1) -> list[TransferStat]:
    """Data movement per direction, per inference. Time is the self time of every data-movement op in that
    direction (on a GPU: memcpy kernel time); bytes are counted once, at the aten::copy_ that writes them, from
    `detail` (the pass that recorded shapes) when given."""
    acc: dict[str, dict] = defaultdict(lambda: {"calls": 0, "bytes": 0, "time_us": 0.0})
    for evt in events:
        if not is_op_event(evt) or not is_transfer(evt.name):
            continue
        a = acc[_direction(evt, on_cuda)]
        if evt.name == "aten::copy_":
            a["calls"] += 1
        a["time_us"] += (getattr(evt, "self_device_time_total", 0) or 0) if on_cuda else evt.self_cpu_time_total
    n = max(1, iterations)
    byte_scale = n if detail is None else max(1, detail_iterations)
    for evt in (events if detail is None else detail):
        if is_op_event(evt) and evt.name == "aten::copy_":
            acc[_direction(evt, on_cuda)]["bytes"] += copy_bytes(evt) * n / byte_scale
    out = []
    for direction, a in acc.items():
        time_ms = a["time_us"] / 1e3 / n
        label = HOST_TRANSFER_LABEL if direction == "host" else DEVICE_TRANSFER_LABEL
        out.append(TransferStat(direction=direction, calls=a["calls"] / n, bytes=a["bytes"] / n, time_ms=time_ms,
                                bandwidth_gbps=(a["bytes"] / n) / (time_ms * 1e6) if time_ms > 0 else 0.0, label=label))
    out.sort(key=lambda t: t.time_ms, reverse=True)
    return out


def _parent_direction(evt) -> str:
    """A wrapper op (aten::to, clone) takes the direction of the copy_ it contains."""
    stack = list(getattr(evt, "cpu_children", []) or [])
    while stack:
        child = stack.pop()
        if child.name == "aten::copy_":
            return copy_direction(child, True)
        stack.extend(getattr(child, "cpu_children", []) or [])
    return "D2D"


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
