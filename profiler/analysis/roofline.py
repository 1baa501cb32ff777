"""Roofline per operator and per graph node: FLOPs and bytes moved give arithmetic intensity; with the measured time,
achieved FLOP/s and GB/s; each is compute-, memory- or overhead-bound against the ceilings for the run's dtype.

Pure functions over a ProfileRun and Peaks. An op's roof time is max(FLOPs / GEMM peak, bytes / bandwidth): the time
it would take at the machine's limit. It is *overhead-bound* when its measured time is far above that roof and each
call does tiny work: roof_ms < OVERHEAD_FRACTION x time_ms and roof per call < TINY_CALL_US. Then launch, dispatch
and Python dominate, and neither more FLOP/s nor more bandwidth would help. Otherwise it is compute-bound when its
compute time is the larger of its two roof times, else memory-bound.
"""
from __future__ import annotations

import ast
import math
import re

from profiler import op_categories as oc
from profiler.analysis import basis as basis_mod
from profiler.schema import GraphNode, OpStat, Peaks, ProfileRun, Roofline, RooflinePoint
from profiler.traces import work

OVERHEAD_FRACTION = 0.10  # roof under 10% of the measured time ...
TINY_CALL_US = 20.0  # ... and under 20 us of work per call: a dispatch/launch costs ~5-20 us on a CPU
_ELEMENT_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "int8": 1, "qint8": 1, "quint8": 1,
                  "int64": 8, "long": 8, "int32": 4, "int": 4, "bool": 1, "float64": 8, "double": 8}
_PEAK_FIELD = {"fp32": "fp32_gflops", "bf16": "bf16_gflops", "fp16": "fp16_gflops", "int8": "int8_gops",
               "tf32": "tf32_gflops", "fp8": "fp8_gflops"}
_DTYPE_KIND = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int8": "int8"}
# ops whose FLOPs the counter puts on the outer call while the time sits in an inner kernel: one point each
FAMILIES = {"convolution": oc.CONVOLUTION, "batch_norm": oc.BATCH_NORM}


def run_dtype(run: ProfileRun) -> str:
    """The ceiling's dtype: the config's dtype, int8 when the run's time is mostly in int8 kernels; for an imported
    trace, the dtype most of its counted matmul-class time ran in (its ops' recorded input types)."""
    int8_ms = sum(o.exec_ms for o in run.ops if oc.is_int8(o.name))
    mm_ms = sum(o.exec_ms for o in run.ops if o.flops > 0)
    if mm_ms > 0 and int8_ms > 0.5 * mm_ms:
        return "int8"
    by_dtype: dict[str, float] = {}
    for o in run.ops:
        if o.dtype in _PEAK_FIELD and o.flops > 0:
            by_dtype[o.dtype] = by_dtype.get(o.dtype, 0.0) + o.exec_ms
    if by_dtype:
        return max(by_dtype, key=by_dtype.get)
    return _DTYPE_KIND.get(run.config.dtype, "fp32")


def peak_gflops(peaks: Peaks, dtype: str) -> float:
    """The GEMM ceiling for `dtype` (fp32's when that dtype was not measured)."""
    return getattr(peaks, _PEAK_FIELD.get(dtype, "fp32_gflops"), 0.0) or peaks.fp32_gflops


def shape_numel(text: str) -> list[int]:
    """Element counts of the tensors in a recorded shape string ('[[8, 128], [], [768, 768]]' -> [1024, 589824])."""
    out = []
    for inner in re.findall(r"\[([0-9, ]*)\]", text):
        dims = [int(d) for d in inner.replace(" ", "").split(",") if d]
        if dims:
            out.append(math.prod(dims))
    return out


def bytes_from_shapes(op: OpStat, element_bytes: int) -> float:
    """Bytes per inference from the op's recorded input shapes (inputs read, one output of the largest input's size
    written; the mean over its distinct shapes, times its calls): the estimate for imported traces, which record
    shapes but not bytes."""
    per_shape = [float(sum(n) + max(n)) for n in (shape_numel(s) for s in op.input_shapes) if n]
    return sum(per_shape) / len(per_shape) * element_bytes * op.calls if per_shape else 0.0


def _flash_bshd(s) -> int | None:
    """CUDA flash / efficient attention forward: q, k, v laid out [batch, seq, heads, head_dim]."""
    (b, sq, h, d), sk = s[0], s[1][1]
    return 4 * b * h * sq * sk * d


_SHAPE_FORMULAS = {"aten::_flash_attention_forward": _flash_bshd, "aten::_efficient_attention_forward": _flash_bshd}


def flops_from_shapes(op: OpStat) -> float:
    """FLOPs per inference from the op's recorded input shapes by profiler.measure.flops' formulas (the mean over its
    distinct shapes, times its calls): for imported traces recorded without FLOPs."""
    formula = _SHAPE_FORMULAS.get(op.name) or work.EVENT_FORMULAS.get(op.name)
    if formula is None:
        return 0.0
    values = []
    for text in op.input_shapes:
        try:
            value = formula(ast.literal_eval(text))
        except (ValueError, SyntaxError, IndexError, TypeError):
            value = None
        if value is not None:
            values.append(float(value))
    return sum(values) / len(values) * op.calls if values else 0.0


def classify(time_ms: float, compute_ms: float, memory_ms: float, calls: float = 1.0, known: bool = True) -> str:
    """compute, memory or overhead (see the module docstring); "unknown" for an op whose work nothing recorded (a
    custom op in a trace: its time is real, its bound cannot be told)."""
    if not known:
        return "unknown"
    roof = max(compute_ms, memory_ms)
    per_call_us = roof / max(calls, 1e-9) * 1e3
    if time_ms > 0 and roof < OVERHEAD_FRACTION * time_ms and per_call_us < TINY_CALL_US:
        return "overhead"
    return "compute" if compute_ms >= memory_ms and compute_ms > 0 else "memory"


def point(name: str, flops: float, nbytes: float, time_ms: float, peak: float, bw: float, calls: float = 1.0,
          bytes_source: str = "counted", kind: str = "op", known: bool = True, dtype: str = "") -> RooflinePoint:
    """One roofline point from work, time and the ceilings (GFLOP/s, GB/s)."""
    compute_ms = flops / (peak * 1e9) * 1e3 if peak > 0 else 0.0
    memory_ms = nbytes / (bw * 1e9) * 1e3 if bw > 0 else 0.0
    roof = max(compute_ms, memory_ms)
    sec = time_ms * 1e-3
    return RooflinePoint(name=name, flops=flops, bytes=nbytes, intensity=flops / nbytes if nbytes > 0 else 0.0,
                         time_ms=time_ms, calls=calls, achieved_gflops=flops / sec / 1e9 if sec > 0 else 0.0,
                         achieved_gbs=nbytes / sec / 1e9 if sec > 0 else 0.0, compute_ms=compute_ms,
                         memory_ms=memory_ms, roof_ms=roof, headroom_ms=max(0.0, time_ms - roof) if known else 0.0,
                         bound=classify(time_ms, compute_ms, memory_ms, calls, known), bytes_source=bytes_source,
                         kind=kind, percent_of_roof=100 * roof / time_ms if time_ms > 0 else 0.0, dtype=dtype)


def _element_bytes(run: ProfileRun) -> int:
    return _ELEMENT_BYTES.get(run.config.dtype, 4)


def _family(name: str) -> str | None:
    return next((f for f, names in FAMILIES.items() if oc.matches(name, names)), None)


def merged_ops(ops: list[OpStat]) -> list[OpStat]:
    """The ops with each family (FAMILIES) merged into one: FLOPs, bytes and time summed, calls the largest."""
    out, merged = [], {}
    for o in ops:
        fam = _family(o.name) if o.category == "compute" else None
        if fam is None:
            out.append(o)
            continue
        if fam not in merged:
            merged[fam] = OpStat(name=fam, calls=0.0, exec_ms=0.0, trans_ms=0.0, flops_known=True,
                                 input_shapes=list(o.input_shapes))
            out.append(merged[fam])
        m = merged[fam]
        m.calls, m.exec_ms, m.flops, m.bytes = max(m.calls, o.calls), m.exec_ms + o.exec_ms, m.flops + o.flops, \
            m.bytes + o.bytes
    return out


def op_points(run: ProfileRun, peaks: Peaks, dtype: str | None = None) -> list[RooflinePoint]:
    """A point per compute operator (families merged), most time first; times on the median's basis (profiled times
    scaled by profiler.analysis.basis, so achieved rates are those of an unprofiled inference)."""
    dtype = dtype or run_dtype(run)
    scale = basis_mod.basis(run).op_scale
    peak, bw, eb = peak_gflops(peaks, dtype), peaks.mem_bw_gbs, _element_bytes(run)
    trace = run.model.source == "trace"
    counted = any(o.bytes > 0 for o in run.ops)  # a live run counted bytes at the dispatcher; an import, from shapes
    any_flops = any(o.flops > 0 for o in run.ops)  # a run saved before imports counted work: count FLOPs here
    # an imported trace knows which ops' work its shapes told; a live run counts every op it times
    judged = trace and run.totals.flop_coverage is not None
    out = []
    for o in merged_ops(run.ops):
        if o.category != "compute" or o.exec_ms <= 0:
            continue
        if not any_flops:
            o = OpStat.from_dict({**o.to_dict(), "flops": flops_from_shapes(o)})
        nbytes, source = o.bytes, "shapes" if trace else "counted"
        if not counted:
            nbytes = bytes_from_shapes(o, eb)
            source = "shapes" if nbytes > 0 else "none"
        op_dtype = "int8" if oc.is_int8(o.name) else o.dtype if o.dtype in _PEAK_FIELD else dtype
        op_peak = peak_gflops(peaks, op_dtype) if op_dtype != dtype else peak
        known = not judged or o.flops_known or o.flops > 0 or nbytes > 0
        out.append(point(o.name, o.flops, nbytes, o.exec_ms * scale, op_peak, bw, o.calls, source, known=known,
                         dtype=op_dtype))
    return sorted(out, key=lambda p: -p.time_ms)


def _shape_bytes(shape: str, dtype: str) -> float:
    return float(sum(shape_numel(shape))) * _ELEMENT_BYTES.get(dtype.replace("torch.", ""), 4)


def node_bytes(node: GraphNode, by_id: dict[str, GraphNode]) -> float:
    """A node's bytes: counted, else its inputs' outputs read plus its own output written."""
    if node.bytes > 0:
        return node.bytes
    read = sum(_shape_bytes(by_id[i].output_shape, by_id[i].output_dtype) for i in node.inputs if i in by_id)
    return read + _shape_bytes(node.output_shape, node.output_dtype)


def node_point_map(run: ProfileRun, peaks: Peaks, dtype: str | None = None) -> dict[str, RooflinePoint]:
    """A point per timed graph node, by node id; times scaled to the median (profiler.analysis.basis)."""
    dtype = dtype or run_dtype(run)
    peak, bw = peak_gflops(peaks, dtype), peaks.mem_bw_gbs
    by_id = {n.id: n for n in run.graph.nodes}
    scale = basis_mod.basis(run).graph_scale
    return {n.id: point(n.id if not n.module else f"{n.module} ({n.op})", n.flops, node_bytes(n, by_id),
                        n.exec_ms * scale, peak, bw, 1.0, "counted" if n.bytes > 0 else "shapes", "node")
            for n in run.graph.nodes if n.exec_ms > 0 and n.kind not in ("placeholder", "output")}


def node_points(run: ProfileRun, peaks: Peaks, dtype: str | None = None) -> list[RooflinePoint]:
    """A point per timed graph node, most time first."""
    return sorted(node_point_map(run, peaks, dtype).values(), key=lambda p: -p.time_ms)


def roofline(run: ProfileRun, peaks: Peaks) -> Roofline:
    """The run on its roofline: points per op and per node, time by bound, and the floor latency at peak."""
    dtype = run_dtype(run)
    peak, bw = peak_gflops(peaks, dtype), peaks.mem_bw_gbs
    points = op_points(run, peaks, dtype)
    by_bound = {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
    for p in points:
        by_bound[p.bound] = by_bound.get(p.bound, 0.0) + p.time_ms
    # time no op accounts for (Python between ops, the framework) is overhead too: all on the median's basis
    by_bound["overhead"] += basis_mod.breakdown(run)["unexplained"]
    floor = sum(p.roof_ms for p in points)
    measured, what = run.latency.median_ms, "median"
    if basis_mod.basis(run).trace:  # op figures are totals over the trace: the floor against the trace's wall time
        steps = len(run.latency.samples_ms or [])
        measured = basis_mod.breakdown(run)["wall"]
        what = f"wall time of the trace ({steps} steps)" if steps > 1 else "wall time of the trace"
    notes = []
    if not any(o.flops > 0 for o in run.ops) and any(p.flops > 0 for p in points):
        notes.append("FLOPs counted from recorded input shapes (the trace recorded none)")
    if any(p.bytes_source == "shapes" for p in points):
        notes.append("bytes estimated from recorded input shapes for some operators (not counted at the dispatcher)")
    if peaks.source == "spec":
        notes.append("ceilings are the GPU's published spec, not measured")
    if by_bound.get("unknown"):
        notes.append(f"{by_bound['unknown']:.3g} ms in operators whose work the trace does not record (custom ops "
                     "without weight shapes, graph replays): bound unknown")
    if any(p.dtype and p.dtype != dtype for p in points):
        notes.append(f"each operator is placed against the ceiling of its own dtype; the chart's line is {dtype}'s")
    return Roofline(run_id=run.id, dtype=dtype, peak_gflops=peak, mem_bw_gbs=bw,
                    ridge_intensity=peak / bw if bw > 0 else 0.0, peaks_source=peaks.source, points=points,
                    nodes=node_points(run, peaks, dtype), measured_ms=measured, floor_ms=floor,
                    headroom_ms=sum(p.headroom_ms for p in points), time_by_bound=by_bound,
                    verdict=max(by_bound, key=by_bound.get) if any(by_bound.values()) else "", notes=notes,
                    measured_what=what)


def amdahl(share: float, factor: float) -> float:
    """Whole-model speedup when `share` of the time runs `factor` times faster."""
    share = min(max(share, 0.0), 1.0)
    return 1.0 / ((1.0 - share) + share / factor) if factor > 0 else 1.0


def share(r: Roofline, bound: str) -> float:
    """Share of the accounted time that is `bound`."""
    total = sum(r.time_by_bound.values())
    return r.time_by_bound.get(bound, 0.0) / total if total > 0 else 0.0
