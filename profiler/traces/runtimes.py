"""Per-op figures and the graph of a model that ONNX Runtime or OpenVINO runs, read from their own profilers.

ONNX Runtime writes a Chrome-format JSON list when a session profiles (SessionOptions.enable_profiling): one "Node"
event per node run, named `<node>_kernel_time`, with args op_name, provider, input_type_shape and output_type_shape,
inside one "Session" `model_run` event per inference. OpenVINO keeps per-layer performance counters on an infer
request (compiled with PERF_COUNT): node_name, node_type, exec_type, real_time, status; its runtime model is the graph
it executed. Both become the same per-node records (NodeTime), then OpStat per op type (the ONNX op type,
"MatMulInteger", "FusedMatMul"; the OpenVINO layer type, "FullyConnected") and a Graph with the runtime's nodes.

Pure readers: a file, a parsed list or duck-typed runtime objects in, OpStat and Graph out. Neither runtime is
imported; reading an .onnx file's graph imports `onnx`.
"""
from __future__ import annotations

import json
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from profiler import op_categories as oc
from profiler.schema import Graph, GraphNode, OpStat, TraceFormatError

ORT_METHOD, OPENVINO_METHOD = "onnxruntime", "openvino"
_ELEMENT_BYTES = {"float": 4, "float32": 4, "f32": 4, "double": 8, "f64": 8, "float16": 2, "f16": 2, "bfloat16": 2,
                  "bf16": 2, "int64": 8, "i64": 8, "int32": 4, "i32": 4, "int16": 2, "uint16": 2, "int8": 1, "i8": 1,
                  "uint8": 1, "u8": 1, "bool": 1, "boolean": 1}


@dataclass
class NodeTime:
    """One node the runtime executed: its time and calls per inference (means over the profiled inferences, so that
    they add up to the mean wall time of those inferences, as a live run's ops do), and the shapes it ran on."""

    name: str
    op: str
    ms: float = 0.0
    calls: float = 0.0
    input_shapes: list[list[int]] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    output_dtypes: list[str] = field(default_factory=list)
    kernel: str = ""  # ORT's execution provider, or OpenVINO's exec type (brgemm_avx2_FP32, ...)

    @property
    def flops(self) -> float | None:
        """FLOPs of one call from its shapes; 0.0 for ops that do no matmul-class work, None when unknown."""
        return op_flops(self.op, self.input_shapes, self.output_shapes)

    @property
    def bytes(self) -> float:
        """Bytes one call reads and writes: its input and output tensors."""
        return float(sum(_numel(s) * _ELEMENT_BYTES.get(d, 4) for s, d in
                         zip(self.input_shapes + self.output_shapes, self.input_dtypes + self.output_dtypes)))


@dataclass
class RuntimeProfile:
    """The nodes of the profiled inferences, per inference, in the order they first ran."""

    method: str  # ORT_METHOD or OPENVINO_METHOD
    nodes: list[NodeTime]
    inferences: int
    run_ms: float = 0.0  # mean time of an inference inside the runtime, where its profile says (ORT's model_run)

    def ops(self) -> list[OpStat]:
        """One OpStat per op type, per inference; layout and dtype changes are data movement (T_trans)."""
        return op_stats(self.nodes)


# ---------------------------------------------------------------- FLOPs from shapes

def _numel(shape: Iterable[int]) -> int:
    return math.prod(int(d) for d in shape)


def _contracted(a: list[int], b: list[int]) -> int | None:
    """K of a matmul a x b where either may be transposed: a's dim that b shares (a's last first)."""
    if not a or not b:
        return None
    if len(a) == 1:
        return a[0]
    tail = b[-2:]
    return a[-1] if a[-1] in tail else a[-2] if a[-2] in tail else None


def _matmul(inputs: list[list[int]], outputs: list[list[int]], b_index: int = 1) -> float | None:
    if not inputs or not inputs[0] or not outputs:
        return None
    # without the second input's shape (a weight ORT's profile leaves out), K is the activation's last dimension
    k = _contracted(inputs[0], inputs[b_index]) if len(inputs) > b_index else inputs[0][-1]
    return None if k is None else 2.0 * _numel(outputs[0]) * k


def _conv(inputs: list[list[int]], outputs: list[list[int]], w_index: int = 1) -> float | None:
    if len(inputs) <= w_index or not outputs or len(inputs[w_index]) < 3 or len(outputs[0]) != len(inputs[w_index]):
        return None  # a blocked (NCHWc) weight layout: its per-output work is not readable from the shape
    return 2.0 * _numel(outputs[0]) * _numel(inputs[w_index][1:])


def _attention(inputs: list[list[int]], outputs: list[list[int]]) -> float | None:
    """ORT's Attention: input [B, S, H_in] x packed QKV weights [H_in, 3H], then QK^T and AV over the sequence."""
    if len(inputs) < 2 or len(inputs[0]) != 3 or len(inputs[1]) != 2:
        return None
    b, s, h_in = inputs[0]
    h3 = inputs[1][1]
    return 2.0 * b * s * h_in * h3 + 4.0 * b * s * s * (h3 // 3)


# op type -> FLOPs of one call from (input shapes, output shapes); a formula table, not a family (op_categories)
FORMULAS = {
    "MatMul": _matmul, "FusedMatMul": _matmul, "MatMulInteger": _matmul, "MatMulIntegerToFloat": _matmul,
    "DynamicQuantizeMatMul": _matmul, "Gemm": _matmul, "FusedGemm": _matmul, "FullyConnected": _matmul,
    "QLinearMatMul": lambda i, o: _matmul(i, o, 3), "QGemm": lambda i, o: _matmul(i, o, 3),
    "Conv": _conv, "FusedConv": _conv, "ConvInteger": _conv, "Convolution": _conv, "GroupConvolution": _conv,
    "QLinearConv": lambda i, o: _conv(i, o, 3), "Attention": _attention,
}
# families whose ops do matmul-class work: without a formula their FLOPs are unknown, not zero
_WORK = oc.MATMUL + oc.CONVOLUTION + oc.INT8_CONVOLUTION + oc.ATTENTION + oc.RECURRENT


def op_flops(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> float | None:
    """FLOPs of one call of an ONNX / OpenVINO op (2 per multiply-accumulate); 0.0 for ops without matmul-class
    work, None when its shapes cannot say."""
    formula = FORMULAS.get(op)
    if formula is not None:
        try:
            return formula(inputs, outputs)
        except (TypeError, ValueError, IndexError):
            return None
    return None if oc.matches(op, _WORK) else 0.0


# ---------------------------------------------------------------- per node -> per op type

def op_stats(nodes: list[NodeTime]) -> list[OpStat]:
    """One OpStat per op type over `nodes` (per-inference figures): calls, time (host = exec = total on a CPU
    runtime), FLOPs and bytes from shapes, distinct input shapes most frequent first."""
    groups: dict[str, list[NodeTime]] = {}
    for n in nodes:
        groups.setdefault(n.op, []).append(n)
    out = []
    for op, members in groups.items():
        ms = sum(n.ms for n in members)
        flops = [n.flops for n in members]
        shapes: dict[str, float] = {}
        for n in members:
            if n.input_shapes:
                key = str([list(s) for s in n.input_shapes if s])
                shapes[key] = shapes.get(key, 0.0) + n.calls
        moving = oc.is_transfer(op)
        out.append(OpStat(
            name=op, calls=sum(n.calls for n in members), exec_ms=0.0 if moving else ms, trans_ms=ms if moving else 0.0,
            host_ms=ms, total_ms=ms, flops=sum(f * n.calls for f, n in zip(flops, members) if f),
            flops_known=all(f is not None for f in flops), bytes=sum(n.bytes * n.calls for n in members),
            input_shapes=[s for s, _ in sorted(shapes.items(), key=lambda kv: -kv[1])[:5]],
            category="transfer" if moving else "compute"))
    return sorted(out, key=lambda o: -(o.exec_ms + o.trans_ms))


# ---------------------------------------------------------------- ONNX Runtime

def _typed_shapes(entries: Any) -> tuple[list[list[int]], list[str]]:
    """ORT's [{"float": [8, 128, 768]}, ...] as (shapes, dtypes)."""
    shapes, dtypes = [], []
    for entry in entries or []:
        if isinstance(entry, dict) and entry:
            dtype, shape = next(iter(entry.items()))
            shapes.append([int(d) for d in shape])
            dtypes.append(str(dtype))
    return shapes, dtypes


def _ort_events(source: str | Path | list) -> list[dict]:
    if isinstance(source, list):
        return source
    path = Path(source)
    try:
        events = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TraceFormatError(f"{path.name}: not a readable ONNX Runtime profile ({exc})") from None
    if isinstance(events, dict):  # a Chrome trace document rather than ORT's bare list
        events = events.get("traceEvents", [])
    return events if isinstance(events, list) else []


def read_ort_profile(source: str | Path | list, inferences: int) -> RuntimeProfile:
    """ONNX Runtime's profile (the file end_profiling() returned, or its parsed list) as per-inference node times.

    The last `inferences` model runs in it are the measured ones (earlier runs were warm-up); a profile without
    model_run events is taken as exactly `inferences` runs."""
    events = _ort_events(source)
    kernels = [e for e in events if isinstance(e, dict) and e.get("cat") == "Node"
               and str(e.get("name", "")).endswith("_kernel_time")]
    if not kernels:
        raise TraceFormatError("not an ONNX Runtime profile: no Node events named <node>_kernel_time")
    runs = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in events
                  if isinstance(e, dict) and e.get("cat") == "Session" and e.get("name") == "model_run")
    kept = runs[-max(1, inferences):]
    starts = [r[0] for r in kept]

    def measured(ts: float) -> bool:
        """The event ran in a kept inference, not a warm-up (all count without model_run events)."""
        i = bisect_right(starts, ts) - 1
        return not kept or (i >= 0 and ts <= kept[i][1])

    n = len(kept) or max(1, inferences)
    nodes: dict[str, NodeTime] = {}
    for e in sorted(kernels, key=lambda e: float(e["ts"])):
        if not measured(float(e["ts"])):
            continue
        args = e.get("args") or {}
        name = str(e["name"])[: -len("_kernel_time")]
        node = nodes.get(name)
        if node is None:
            ins, in_types = _typed_shapes(args.get("input_type_shape"))
            outs, out_types = _typed_shapes(args.get("output_type_shape"))
            node = nodes[name] = NodeTime(name, str(args.get("op_name", name)), input_shapes=ins, input_dtypes=in_types,
                                          output_shapes=outs, output_dtypes=out_types,
                                          kernel=str(args.get("provider", "")))
        node.ms += float(e.get("dur", 0)) / 1e3
        node.calls += 1
    run_ms = sum(b - a for a, b in kept) / 1e3 / len(kept) if kept else 0.0
    return RuntimeProfile(ORT_METHOD, _per_inference(nodes.values(), n), n, run_ms)


def _per_inference(nodes: Iterable[NodeTime], n: int) -> list[NodeTime]:
    """Totals over `n` inferences as means per inference."""
    out = []
    for node in nodes:
        node.ms, node.calls = node.ms / n, node.calls / n
        out.append(node)
    return out


def fill_weight_shapes(profile: RuntimeProfile, specs: list[GraphSpec]) -> None:
    """Put the weights' shapes and dtypes, which ORT's profile leaves out of input_type_shape (it lists the inputs
    that are not initializers), in their places among each node's inputs, from the graph (onnx_graph)."""
    by_name = {s.name: s for s in specs}
    for node in profile.nodes:
        spec = by_name.get(node.name)
        if spec is None or not spec.weights or len(node.input_shapes) >= len(spec.weights):
            continue
        given = iter(zip(node.input_shapes, node.input_dtypes))
        full = [w if w is not None else next(given, None) for w in spec.weights]
        full = [f for f in full if f is not None]
        node.input_shapes, node.input_dtypes = [list(s) for s, _ in full], [d for _, d in full]


# ---------------------------------------------------------------- OpenVINO

def _ms(value: Any) -> float:
    """A counter's time (datetime.timedelta, or microseconds) in ms."""
    return value.total_seconds() * 1e3 if hasattr(value, "total_seconds") else float(value) / 1e3


def read_openvino_counters(after: list[Any], runs_after: int, shapes: dict[str, tuple] | None = None,
                           before: list[Any] | None = None, runs_before: int = 0) -> RuntimeProfile:
    """OpenVINO's per-layer counters (request.get_profiling_info(); objects or dicts with node_name, node_type,
    exec_type, real_time, status) as per-inference node times. The CPU plugin reports each layer's mean over every
    inference since the model was compiled, warm-up included: read after `runs_after` inferences, and (`before`)
    after the `runs_before` warm-up ones, the measured runs' mean is the difference of the totals. Layers that did not
    run (fused into a neighbour, constants, parameters) are left out. `shapes`: node name -> (input shapes, input
    dtypes, output shapes, output dtypes), from the runtime model (openvino_graph)."""
    if not after or runs_after <= runs_before:
        raise TraceFormatError("no OpenVINO performance counters: compile the model with PERF_COUNT set to YES")
    get = lambda c, k: c[k] if isinstance(c, dict) else getattr(c, k)
    ran = lambda c: "EXECUTED" in str(get(c, "status")) and "NOT" not in str(get(c, "status"))
    earlier = {str(get(c, "node_name")): _ms(get(c, "real_time")) for c in before or () if ran(c)}
    measured = runs_after - runs_before
    nodes: list[NodeTime] = []
    for c in after:
        if not ran(c):
            continue
        name = str(get(c, "node_name"))
        ins, in_types, outs, out_types = (shapes or {}).get(name, ([], [], [], []))
        total = _ms(get(c, "real_time")) * runs_after - earlier.get(name, 0.0) * runs_before
        # counters are whole microseconds: a difference of two rounded totals can dip below zero for a tiny layer
        nodes.append(NodeTime(name, str(get(c, "node_type")), ms=max(total, 0.0) / measured, calls=1,
                              input_shapes=list(ins), input_dtypes=list(in_types), output_shapes=list(outs),
                              output_dtypes=list(out_types), kernel=str(get(c, "exec_type"))))
    return RuntimeProfile(OPENVINO_METHOD, nodes, measured)


# ---------------------------------------------------------------- the graph the runtime ran

@dataclass
class GraphSpec:
    """One node of the graph a runtime executed, before timing: its producers are other specs' names."""

    name: str
    op: str
    inputs: list[str]
    kind: str = "call_function"  # "placeholder" (a model input), "call_function" or "output"
    module: str = ""
    output_shape: str = ""
    output_dtype: str = ""
    # per input of the node: (shape, dtype) of a weight (an initializer), None for an activation
    weights: list[tuple[list[int], str] | None] = field(default_factory=list)


def module_of(node_name: str, scope_root: str = "") -> str:
    """The module path in an exported node's name: /bert/encoder/layer.0/attention/self/query/MatMul ->
    bert.encoder.layer.0.attention.self.query (ORT's fusion suffixes and `scope_root`, the exporting wrapper's
    own scope, dropped); "" for names without one."""
    if not node_name.startswith("/"):
        return ""
    parts = [p for p in node_name.split("/") if p]
    while parts and parts[-1].endswith("Fusion"):
        parts.pop()
    parts = parts[:-1]  # the op itself
    if scope_root and parts[:1] == [scope_root]:
        parts = parts[1:]
    return ".".join(parts)


def onnx_graph(path: str | Path, scope_root: str = "") -> list[GraphSpec]:
    """The nodes of an .onnx file (ORT's optimized model, as its session ran it), producers as edges; weights
    (initializers) are not nodes."""
    import onnx  # only this reader needs it

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    weights = {i.name: (list(i.dims), onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name) for i in g.initializer}
    producer: dict[str, str] = {}
    specs = [GraphSpec(i.name, "input", [], kind="placeholder") for i in g.input if i.name not in weights]
    producer.update({s.name: s.name for s in specs})
    for k, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{k}"
        inputs = list(dict.fromkeys(producer[t] for t in node.input if t in producer))
        specs.append(GraphSpec(name, node.op_type, inputs, module=module_of(name, scope_root),
                               weights=[weights.get(t) for t in node.input if t]))
        producer.update({t: name for t in node.output if t})
    specs.append(GraphSpec("output", "output", [producer[o.name] for o in g.output if o.name in producer],
                           kind="output"))
    return specs


def _partial(shape: Any) -> list[int] | None:
    """An OpenVINO partial shape as ints, None while any dimension is dynamic."""
    try:
        return [int(d) for d in shape.to_shape()] if shape.is_static else None
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return None


def openvino_graph(runtime_model: Any, scope_root: str = "") -> tuple[list[GraphSpec], dict[str, tuple]]:
    """The executed graph of an OpenVINO compiled model (compiled.get_runtime_model()): its nodes with producers as
    edges (constants are weights, not nodes), and per node the shapes it last ran on, for read_openvino_counters.
    Layers keep the exported node names, so module paths come from them (module_of)."""
    specs, shapes, constants = [], {}, set()
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        name = op.get_friendly_name()
        if layer == "Const":
            constants.add(name)
            continue
        ins = [op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())]
        in_shapes = [_partial(op.input(i).get_partial_shape()) for i in range(op.get_input_size())]
        out_shapes = [_partial(op.get_output_partial_shape(i)) for i in range(op.get_output_size())]
        in_types = [str(op.input(i).get_element_type().get_type_name()) for i in range(op.get_input_size())]
        out_types = [str(op.get_output_element_type(i).get_type_name()) for i in range(op.get_output_size())]
        if all(s is not None for s in in_shapes + out_shapes):
            shapes[name] = (in_shapes, in_types, out_shapes, out_types)
        kind = {"Input": "placeholder", "Parameter": "placeholder", "Output": "output", "Result": "output"}.get(
            layer, "call_function")
        first = out_shapes[0] if out_shapes else None
        specs.append(GraphSpec(name, layer, [i for i in dict.fromkeys(ins) if i not in constants], kind=kind,
                               module=module_of(name, scope_root), output_shape="" if first is None else str(first),
                               output_dtype=out_types[0] if out_types else ""))
    return specs, shapes


def runtime_graph(profile: RuntimeProfile, specs: list[GraphSpec], note: str = "") -> Graph:
    """The runtime's graph with each node's measured time (T_exec, or T_trans for layout and dtype changes), FLOPs
    and bytes per inference. Timed nodes the graph does not name are added without edges, so the node times add up
    to the op times."""
    times = {n.name: n for n in profile.nodes}
    nodes, named = [], set()
    for s in specs:
        t = times.get(s.name)
        named.add(s.name)
        nodes.append(_graph_node(s, t))
    for t in profile.nodes:
        if t.name not in named:
            nodes.append(_graph_node(GraphSpec(t.name, t.op, []), t))
    timed = [n for n in nodes if n.exec_ms + n.trans_ms > 0]
    return Graph(method=profile.method, nodes=nodes, note=note, timed_nodes=len(timed),
                 exec_ms=sum(n.exec_ms for n in nodes), trans_ms=sum(n.trans_ms for n in nodes))


def _graph_node(s: GraphSpec, t: NodeTime | None) -> GraphNode:
    ms = t.ms if t else 0.0
    moving = oc.is_transfer(s.op)
    shape = s.output_shape or (str(t.output_shapes[0]) if t and t.output_shapes else "")
    dtype = s.output_dtype or (t.output_dtypes[0] if t and t.output_dtypes else "")
    return GraphNode(id=s.name, op=s.op, kind=s.kind, module=s.module, inputs=list(s.inputs), output_shape=shape,
                     output_dtype=dtype, flops=(t.flops or 0.0) * t.calls if t else 0.0,
                     exec_ms=0.0 if moving else ms, trans_ms=ms if moving else 0.0,
                     bytes=t.bytes * t.calls if t else 0.0)
