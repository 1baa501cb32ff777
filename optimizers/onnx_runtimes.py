"""ONNX Runtime and OpenVINO: the model exported to ONNX and run by another runtime, as one more pass.

`onnxruntime` runs the export in an InferenceSession (all graph optimizations: ORT fuses MatMul+scale, bias+GELU,
layer norms); `onnxruntime-int8` first quantizes it with onnxruntime.quantization.quantize_dynamic (int8 weights per
output channel, activations quantized at run time); `openvino` converts the export and compiles it for the CPU in
float32. Each replaces the model with an OnnxModel: an nn.Module whose forward takes the model's own inputs (args and
kwargs) and returns its own output structure (tensors, tuples, dicts, Hugging Face ModelOutputs), so accuracy,
profiling and search treat it like any model; its `oplens_runtime` profiles it with the runtime's own profiler
(profiler.models.loaded.RuntimeProfiler), so a run has ONNX ops, not one opaque call.

The export and its check are optimizers.onnx_export.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from profiler import op_categories as oc
from profiler.models.loaded import RuntimeOps
from profiler.traces import runtimes

from .base import COMPILE, Pass, PassNotApplicable, Tolerance, outcome, register
from .calibration import input_sets, outputs_on
from .checks import holds_int8, weight_dtype
from .onnx_export import SCOPE, Exported, Scratch, Signature, export_onnx, quiet
from .validate import compare_outputs

# Weights per output channel: per tensor loses accuracy (real MiniLM worst held-out sentence cosine 0.956 vs 0.990).
# Full 8-bit weights first, 7-bit (reduce_range) when they miss the tolerance on the calibration set: on a CPU without
# VNNI, u8 x s8 pairs are added in int16 and can saturate. Which one wins depends on the model, measured on this AMD
# Zen 3 (AVX2) on held-out inputs, 8-bit / 7-bit: bert-tiny (random weights) logits 0.9545 / 0.9998, bert-base b2 s64
# 0.99983 / 0.99957, real MiniLM worst sentence 0.9896 / 0.9879.
INT8_WEIGHT_BITS = (8, 7)


# ---------------------------------------------------------------- the wrapper

WARMUP_S, PROFILE_S, MAX_PROFILED = 0.2, 0.3, 50  # profiling: warm-up, then at least this long, at most this many


class OnnxModel(nn.Module):
    """An exported model run by another runtime, called like the original. Subclasses say how to open a file in the
    runtime (open), run what they opened (infer), and profile it. The ONNX file's bytes are the model's state (a
    uint8 buffer mapped from the file), so its size is the file's; the runtime session is opened on first use, and
    again in a copy."""

    runtime = ""

    def __init__(self, exported: Exported, threads: int, engine: Any = None):
        super().__init__()
        self.exported, self.threads, self._engine = exported, threads, engine
        size = exported.path.stat().st_size
        self.register_buffer("onnx_model", torch.from_file(str(exported.path), shared=False, size=size,
                                                           dtype=torch.uint8))

    @staticmethod
    def open(path: Path, threads: int) -> Any:
        raise NotImplementedError

    @staticmethod
    def infer(engine: Any, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def profile_ops(self, args: tuple, kwargs: dict, iterations: int) -> RuntimeOps:
        raise NotImplementedError

    @property
    def oplens_runtime(self) -> OnnxModel:
        """profiler.models.loaded.RuntimeProfiler: this model profiles itself (profile_ops)."""
        return self

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = self.open(self.exported.path, self.threads)
        return self._engine

    def forward(self, *args, **kwargs):
        signature = self.exported.signature
        return signature.outputs(self.infer(self.engine, signature.arrays(args, kwargs)))

    def __deepcopy__(self, memo):  # the file is immutable: a copy shares it and opens its own session
        copied = type(self)(self.exported, self.threads)
        memo[id(self)] = copied
        return copied

    def __reduce__(self):  # a pickle carries the file's bytes and the signature, not the session
        e = self.exported
        return _restore, (type(self), e.path.read_bytes(), e.signature, e.exporter, e.opset, e.nodes, e.dynamic,
                          e.export_s, self.threads)

    def extra_repr(self) -> str:
        return f"{self.runtime}, {self.exported.nodes} ONNX nodes, {self.threads} threads"


def _restore(cls: type, data: bytes, signature: Signature, exporter: str, opset: int, nodes: int, dynamic: dict,
             export_s: float, threads: int) -> OnnxModel:
    scratch = Scratch()
    path = scratch.path / "model.onnx"
    path.write_bytes(data)
    return cls(Exported(path, scratch, signature, exporter, opset, nodes, dynamic, export_s), threads)


def _feed(names: list[str], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs the graph kept (an exporter drops inputs the model never reads)."""
    return {n: inputs[n] for n in names if n in inputs}


class Probe:
    """Opens a candidate file in a runtime and runs it on the example inputs (export_onnx's check), keeping what it
    opened, so the model uses that instead of opening the file again."""

    def __init__(self, model: type[OnnxModel], threads: int):
        self.model, self.threads, self.engine = model, threads, None

    def __call__(self, path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.engine = self.model.open(path, self.threads)
        return self.model.infer(self.engine, inputs)


def profiled_runs(run_once: Callable[[], Any], iterations: int, after_warmup: Callable[[int], None] = lambda n: None
                  ) -> list[float]:
    """Warm the runtime up (two runs, then until WARMUP_S has passed), then run it under its profiler at least
    `iterations` times, more while they fit in PROFILE_S (a millisecond model's per-op figures need more than three):
    the wall time of each profiled run, in ms. `after_warmup(n)` is called once the n warm-up runs are done."""
    t0, n = time.perf_counter(), 0
    while n < 2 or (time.perf_counter() - t0 < WARMUP_S and n < MAX_PROFILED):
        run_once()
        n += 1
    runs = max(iterations, min(MAX_PROFILED, int(PROFILE_S / ((time.perf_counter() - t0) / n))))
    after_warmup(n)
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_once()
        walls.append((time.perf_counter() - t0) * 1e3)
    return walls


def _note(runtime: str, walls: list[float], ops: list, how: str) -> str:
    return (f"per-op figures and graph from {runtime}: the mean of {len(walls)} inferences {how}, after a warm-up; "
            f"profiled, an inference took {statistics.mean(walls):.3g} ms and its ops "
            f"{sum(o.exec_ms + o.trans_ms for o in ops):.3g} ms (the latency above is timed without that profiler)")


# ---------------------------------------------------------------- ONNX Runtime

def ort_session(path: Path, threads: int, **options):
    """An ONNX Runtime CPU session with every graph optimization, `threads` intra-op threads, errors-only logging;
    `options` set more SessionOptions fields (enable_profiling, optimized_model_filepath, ...)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    for key, value in options.items():
        setattr(so, key, value)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtModel(OnnxModel):
    """The exported model in an ONNX Runtime InferenceSession."""

    runtime = "onnxruntime"

    @staticmethod
    def open(path: Path, threads: int) -> tuple:
        session = ort_session(path, threads)
        return session, [i.name for i in session.get_inputs()]

    @staticmethod
    def infer(engine: tuple, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        session, names = engine
        return session.run(None, _feed(names, inputs))

    def profile_ops(self, args: tuple, kwargs: dict, iterations: int) -> RuntimeOps:
        """ONNX Runtime's own profile of a second session with profiling on (warmed up first; its last runs are the
        measured ones), and the optimized graph that session ran."""
        scratch = Scratch("oplens-ort-profile-")
        optimized = scratch.path / "optimized.onnx"
        session = ort_session(self.exported.path, self.threads, enable_profiling=True,
                              profile_file_prefix=str(scratch.path / "ort"), optimized_model_filepath=str(optimized))
        feed = _feed([i.name for i in session.get_inputs()], self.exported.signature.arrays(args, kwargs))
        walls = profiled_runs(lambda: session.run(None, feed), iterations)
        profile = runtimes.read_ort_profile(session.end_profiling(), len(walls))
        try:
            specs = runtimes.onnx_graph(optimized, SCOPE)
        except Exception as exc:  # noqa: BLE001 - the ops stand without the graph
            specs, why = None, f"; no graph ({type(exc).__name__}: {str(exc)[:120]})"
        if specs is not None:
            runtimes.fill_weight_shapes(profile, specs)
        ops = profile.ops()
        note = _note("ONNX Runtime's profiler", walls, ops, "in a second session with profiling on") + (
            "" if specs is not None else why)
        graph = runtimes.runtime_graph(profile, specs, note) if specs is not None else None
        return RuntimeOps(ops, graph, [note], statistics.mean(walls), runtimes.ORT_METHOD)


# ---------------------------------------------------------------- OpenVINO

# float32 on every CPU: OpenVINO would otherwise run bf16 where the CPU has it (AMX, AVX-512 BF16)
OPENVINO_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def ov_compile(model: Any, threads: int, **config):
    """An OpenVINO model compiled for its CPU plugin in float32 with `threads` threads."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {**OPENVINO_CONFIG, "INFERENCE_NUM_THREADS": threads, **config})


class OpenVinoModel(OnnxModel):
    """The exported model converted and compiled by OpenVINO for the CPU."""

    runtime = "openvino"

    @staticmethod
    def open(path: Path, threads: int) -> tuple:
        import openvino as ov

        model = ov.convert_model(str(path))
        compiled = ov_compile(model, threads)
        return model, compiled, compiled.create_infer_request()

    @staticmethod
    def infer(engine: tuple, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        _, compiled, request = engine
        names = [i.get_any_name() for i in compiled.inputs]
        result = request.infer(_feed(names, inputs), share_inputs=True)  # outputs are copies (share_outputs=False)
        return [result[o] for o in compiled.outputs]

    def profile_ops(self, args: tuple, kwargs: dict, iterations: int) -> RuntimeOps:
        """OpenVINO's per-layer counters of the model compiled again with PERF_COUNT on (warmed up first), and the
        runtime graph it executed."""
        compiled = ov_compile(self.engine[0], self.threads, PERF_COUNT="YES")
        engine = (None, compiled, compiled.create_infer_request())
        inputs = self.exported.signature.arrays(args, kwargs)
        read = lambda: [{"node_name": c.node_name, "node_type": c.node_type, "exec_type": c.exec_type,  # noqa: E731
                         "real_time": c.real_time, "status": str(c.status)} for c in engine[2].get_profiling_info()]
        warm: list = []  # (runs, counters) after the warm-up: the counters are means since compiling, warm-up included
        walls = profiled_runs(lambda: self.infer(engine, inputs), iterations, lambda n: warm.append((n, read())))
        specs, shapes = runtimes.openvino_graph(compiled.get_runtime_model(), SCOPE)
        profile = runtimes.read_openvino_counters(read(), warm[0][0] + len(walls), shapes, warm[0][1], warm[0][0])
        ops = profile.ops()
        kernels = sorted({n.kernel for n in profile.nodes if oc.matches(n.op, oc.MATMUL + oc.CONVOLUTION)})
        note = _note("OpenVINO's per-layer counters", walls, ops, "of the model compiled again with PERF_COUNT on") + (
            "; layers fused into others are not listed" + (f"; matmul/convolution kernels: {', '.join(kernels[:6])}"
                                                           if kernels else ""))
        return RuntimeOps(ops, runtimes.runtime_graph(profile, specs, note), [note], statistics.mean(walls),
                          runtimes.OPENVINO_METHOD)


# ---------------------------------------------------------------- the passes

def _check(*packages: str):
    def check(loaded, device) -> str | None:
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            return f"needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''} (pip install " \
                   f"{' '.join(missing)})"
        traits = loaded.traits
        if traits.compiled:
            return f"the model is already compiled ({traits.compiled}); ONNX export takes the model before compiling"
        if holds_int8(loaded):
            return ("the model holds PyTorch int8 kernels, which do not export to ONNX; start from the float32 model "
                    "(onnxruntime-int8 quantizes in ONNX Runtime)")
        if traits.autocast:
            return f"the model runs under {traits.autocast} autocast, which ONNX export does not keep"
        dtype = weight_dtype(loaded)
        if dtype not in (None, torch.float32):
            return f"ONNX export here takes a float32 model; this one's weights are {str(dtype).replace('torch.', '')}"
        return None
    return check


def _version(package: str) -> str:
    return f"{package} {importlib.import_module(package).__version__}"


def _ort_apply(loaded, device):
    probe = Probe(OrtModel, torch.get_num_threads())
    exported = export_onnx(loaded, probe)
    details = {**exported.details(), "runtime": _version("onnxruntime"), "threads": probe.threads,
               "graph_optimization": "ORT_ENABLE_ALL"}
    return outcome(loaded, OrtModel(exported, probe.threads, probe.engine), details,
                   traits={"compiled": "onnxruntime"})


def _weight_matmuls(graph) -> int:
    """MatMuls and Gemms whose second input is a weight (an initializer): what dynamic quantization can make int8."""
    weights = {i.name for i in graph.initializer}
    return sum(n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights for n in graph.node)


def matmul_roles(graph) -> dict[str, list[str]]:
    """The weight MatMuls grouped by their role in a repeated block: the node name with its layer index taken out
    (`/bert/encoder/layer.3/intermediate/dense/MatMul` -> `.../layer.*/intermediate/dense/MatMul`). A role is what
    tends to be sensitive to int8 in every layer alike (the FFN down-projection reads GELU's outlier channels)."""
    weights = {i.name for i in graph.initializer}
    roles: dict[str, list[str]] = {}
    for n in graph.node:
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights and n.name:
            roles.setdefault(re.sub(r"(layers?|blocks?|h)([._/])\d+", r"\1\2*", n.name), []).append(n.name)
    return roles


MAX_ROLES = 6  # float roles tried, one at a time, when every MatMul in int8 misses the tolerance


def _quantized(exported: Exported, bits: int, threads: int, exclude: tuple[str, ...] = (),
               tag: str = "") -> tuple[OrtModel, int]:
    """The export with its MatMuls (and Gemms, but those in `exclude`) dynamically quantized to int8 weights of
    `bits` bits per output channel, in an OrtModel; and how many became int8 MatMuls."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = exported.path.with_name(f"int8-{bits}bit{tag}.onnx")
    with quiet():
        quantize_dynamic(str(exported.path), str(path), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=bits == 7, nodes_to_exclude=list(exclude))
    graph = onnx.load(str(path), load_external_data=False).graph
    count = sum(oc.matches(n.op_type, oc.ONNX_INT8_LINEAR) for n in graph.node)
    return OrtModel(dataclasses.replace(exported, path=path, nodes=len(graph.node)), threads), count


def _ort_int8_apply(loaded, device, tolerance: Tolerance):
    import onnx

    threads = torch.get_num_threads()
    exported = export_onnx(loaded, Probe(OrtModel, threads))
    graph = onnx.load(str(exported.path), load_external_data=False).graph
    candidates = _weight_matmuls(graph)
    sets = input_sets(loaded)
    reference = outputs_on(loaded, sets.calibration)
    tried: dict[int, tuple[float, OrtModel, int]] = {}
    for bits in INT8_WEIGHT_BITS:
        model, count = _quantized(exported, bits, threads)
        if not count:
            raise PassNotApplicable("no MatMul with constant weights in the ONNX graph to quantize (ONNX Runtime's "
                                    "dynamic int8 covers MatMul and Gemm; convolutions stay float)")
        candidate = dataclasses.replace(loaded, module=model)
        tried[bits] = (compare_outputs(reference, outputs_on(candidate, sets.calibration), loaded.info.task).cosine,
                       model, count)
        if tried[bits][0] >= tolerance.min_cosine:
            break
    bits = max(tried, key=lambda b: tried[b][0])
    kept_float = ""
    if tried[bits][0] < tolerance.min_cosine:  # keep one role of MatMuls float, the one that restores the most
        roles = sorted(matmul_roles(graph).items(), key=lambda kv: -len(kv[1]))[:MAX_ROLES]
        by_role: dict[str, tuple[float, OrtModel, int]] = {}
        for i, (role, names) in enumerate(roles):
            if len(names) < 2:
                continue  # a single MatMul (a classifier head) is not a repeated role
            model, count = _quantized(exported, bits, threads, tuple(names), f"-float{i}")
            candidate = dataclasses.replace(loaded, module=model)
            by_role[role] = (compare_outputs(reference, outputs_on(candidate, sets.calibration),
                                             loaded.info.task).cosine, model, count)
        if by_role:
            best_role = max(by_role, key=lambda r: by_role[r][0])
            if by_role[best_role][0] > tried[bits][0]:
                kept_float = best_role
                tried[-1] = by_role.pop(best_role)  # the chosen float role, as a candidate of its own
            for _, other, _ in by_role.values():
                other.exported.path.unlink()
    chosen = -1 if kept_float else bits
    _, model, quantized = tried[chosen]
    for b, (_, other, _) in tried.items():  # only the chosen file stays
        if b != chosen:
            other.exported.path.unlink()
    exported.path.unlink()
    details = {**model.exported.details(), "runtime": _version("onnxruntime"), "threads": threads,
               "graph_optimization": "ORT_ENABLE_ALL", "matmuls_quantized": f"{quantized} of {candidates}",
               "weights": f"int8, per output channel, {bits}-bit" + (" (reduce_range)" if bits == 7 else ""),
               "activations": "uint8, quantized per tensor at run time",
               "calibration_cosine": {(f"{bits}-bit, {kept_float} float" if b == -1 else f"{b}-bit"): round(c, 6)
                                      for b, (c, _, _) in tried.items()},
               **({"kept_float": kept_float} if kept_float else {})}
    convs = sum(n.op_type == "Conv" for n in graph.node)
    return outcome(loaded, model, details, traits={"compiled": "onnxruntime"},
                   warning=f"{convs} convolution(s) stay float32: ONNX Runtime's dynamic int8 quantizes MatMul and "
                           "Gemm only" if convs else None)


def _ov_apply(loaded, device):
    probe = Probe(OpenVinoModel, torch.get_num_threads())
    exported = export_onnx(loaded, probe)
    details = {**exported.details(), "runtime": _version("openvino"), "threads": probe.threads, "precision": "f32"}
    return outcome(loaded, OpenVinoModel(exported, probe.threads, probe.engine), details,
                   traits={"compiled": "openvino"})


register(Pass("onnxruntime", "runtime", "Export to ONNX and run it in ONNX Runtime with every graph optimization "
              "(fused MatMul+scale, bias+GELU, layer norms), as many threads as PyTorch's.", ("cpu",), _ort_apply,
              _check("onnxruntime", "onnx"), group=COMPILE))
register(Pass("onnxruntime-int8", "runtime", "Export to ONNX, quantize its MatMuls with ONNX Runtime's dynamic int8 "
              "(weights per channel; 7-bit when 8-bit misses the tolerance on calibration inputs, as u8 x s8 pairs "
              "saturate on a CPU without VNNI) and run it in ONNX Runtime.",
              ("cpu",), _ort_int8_apply, _check("onnxruntime", "onnx"), group=COMPILE, tuned=True))
register(Pass("openvino", "runtime", "Export to ONNX and run it in OpenVINO, compiled for the CPU in float32.",
              ("cpu",), _ov_apply, _check("openvino", "onnx"), group=COMPILE))
