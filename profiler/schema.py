"""The data contract between profiler, optimizers and dashboard: plain, JSON round-trippable dataclasses.

Units live in field names (_ms, _bytes, _flops). `from_dict` ignores unknown keys so a newer reader
still opens an older run, and `schema_version` lets the store refuse runs it cannot read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class OpLensError(Exception):
    """Base of every error OpLens reports to a person: the message says what is wrong and what to do."""


class ModelLoadError(OpLensError):
    """The model spec could not be turned into a runnable model."""


class ModelRunError(OpLensError):
    """The model loaded but raised, ran out of memory, or rejected its inputs."""


class ProfileCancelled(OpLensError):
    """The caller asked the measurement to stop."""


class RunStoreError(OpLensError):
    """A saved run is missing, unreadable or from an incompatible schema."""


class TraceFormatError(OpLensError):
    """A trace file is not a readable PyTorch/Chrome trace."""


def error_line(exc: BaseException) -> str:
    """An exception as one short line for a report: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _build(cls, data: dict[str, Any] | None):
    """Instantiate `cls` from a dict, recursing into nested dataclasses and lists of them."""
    if data is None:
        return None
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, f in hints.items():
        if name not in data:
            continue
        value = data[name]
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None and value is not None:
            value = [_build(sub, v) for v in value] if isinstance(value, list) else _build(sub, value)
        kwargs[name] = value
    return cls(**kwargs)


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return _build(cls, data)


@dataclass
class DeviceInfo(_Dict):
    kind: str  # "cuda" or "cpu"
    name: str
    threads: int
    torch: str
    transformers: str | None = None
    index: int | None = None
    total_memory_bytes: int | None = None
    capability: str | None = None
    cpu_features: list[str] = field(default_factory=list)


@dataclass
class ModelInfo(_Dict):
    name: str
    source: str  # "registry", "file", "hf-dir", "hub", "torchscript", "export", "state-dict"
    parameters: int
    spec: str = ""
    task: str = ""
    dtype: str = "float32"
    size_bytes: int = 0


@dataclass
class ProfileConfig(_Dict):
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    batch_size: int = 1
    seq_len: int = 128  # sequence length, or image size for vision models
    warmup: int = 3
    repeats: int = 10  # minimum timed iterations
    min_time_s: float = 1.0  # ... and minimum timed seconds; both must be met
    max_time_s: float = 60.0  # stop timing after this even if `repeats` is not reached (at least 3 samples)
    profile_iters: int = 3  # iterations recorded by torch.profiler
    dtype: str = "float32"
    graph: bool = True
    inputs_on_device: bool = False  # False: each inference uploads its inputs, as a server would


@dataclass
class LatencyStats(_Dict):
    samples_ms: list[float]
    median_ms: float = 0.0
    mean_ms: float = 0.0
    std_ms: float = 0.0
    min_ms: float = 0.0
    p10_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    iqr_ms: float = 0.0
    ci_low_ms: float = 0.0  # 95% confidence interval of the median
    ci_high_ms: float = 0.0
    warmup_ms: list[float] = field(default_factory=list)
    noise: str = "ok"  # "ok", "noisy" (IQR > 10% of median) or "unreliable" (> 25%)


@dataclass
class OpStat(_Dict):
    name: str
    calls: float  # per inference
    exec_ms: float  # self time per inference on the timing device (host on CPU, kernels on CUDA)
    trans_ms: float  # data-movement time per inference
    host_ms: float = 0.0  # self CPU time per inference
    device_ms: float = 0.0  # self device (kernel) time per inference
    total_ms: float = 0.0  # inclusive time (with children) on the timing device: for FLOP/s, as FLOPs sit on wrappers
    flops: float = 0.0  # per inference
    memory_bytes: float = 0.0  # self allocated bytes per inference
    input_shapes: list[str] = field(default_factory=list)  # distinct shapes, most frequent first
    category: str = "compute"  # "compute" or "transfer"


@dataclass
class TransferStat(_Dict):
    direction: str  # "H2D", "D2H", "D2D", or "host" (host-side copies/layout changes on CPU)
    calls: float
    bytes: float
    time_ms: float
    bandwidth_gbps: float = 0.0
    label: str = ""


@dataclass
class Totals(_Dict):
    wall_ms: float
    exec_ms: float
    trans_ms: float
    coverage: float  # (exec + trans) / wall
    unexplained_ms: float = 0.0
    trans_label: str = ""


@dataclass
class GraphNode(_Dict):
    id: str
    op: str
    kind: str  # placeholder / call_function / call_module / output / module
    module: str
    inputs: list[str]
    output_shape: str = ""
    output_dtype: str = ""
    flops: float = 0.0
    exec_ms: float = 0.0
    trans_ms: float = 0.0


@dataclass
class Graph(_Dict):
    method: str  # "torch.export", "fx", "module-tree" or "none"
    nodes: list[GraphNode] = field(default_factory=list)
    note: str = ""
    timed_nodes: int = 0
    exec_ms: float = 0.0
    trans_ms: float = 0.0


@dataclass
class MemoryStats(_Dict):
    kind: str  # "cuda-allocator" or "process-rss"
    peak_bytes: int = 0
    baseline_bytes: int = 0


@dataclass
class ProfileRun(_Dict):
    id: str
    created: str
    model: ModelInfo
    device: DeviceInfo
    config: ProfileConfig
    latency: LatencyStats
    totals: Totals
    ops: list[OpStat] = field(default_factory=list)
    transfers: list[TransferStat] = field(default_factory=list)
    graph: Graph = field(default_factory=lambda: Graph(method="none"))
    memory: MemoryStats | None = None
    profiled_latency: LatencyStats | None = None  # the iterations torch.profiler recorded
    paired_latency: LatencyStats | None = None  # unprofiled iterations interleaved with those, for the overhead ratio
    overhead_ratio: float = 0.0  # median over interleaved pairs of profiled / unprofiled time
    trace_path: str | None = None
    label: str = ""
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


_NESTED = {
    ("ProfileRun", "model"): ModelInfo,
    ("ProfileRun", "device"): DeviceInfo,
    ("ProfileRun", "config"): ProfileConfig,
    ("ProfileRun", "latency"): LatencyStats,
    ("ProfileRun", "profiled_latency"): LatencyStats,
    ("ProfileRun", "paired_latency"): LatencyStats,
    ("ProfileRun", "totals"): Totals,
    ("ProfileRun", "ops"): OpStat,
    ("ProfileRun", "transfers"): TransferStat,
    ("ProfileRun", "graph"): Graph,
    ("ProfileRun", "memory"): MemoryStats,
    ("Graph", "nodes"): GraphNode,
}


@dataclass
class OpDiff(_Dict):
    name: str
    status: str  # "faster", "slower", "same", "new", "removed"
    base_ms: float
    new_ms: float
    delta_ms: float
    ratio: float  # base / new (>1 means faster)


@dataclass
class Comparison(_Dict):
    base_id: str
    new_id: str
    speedup: float  # ratio of medians, base / new
    speedup_low: float  # from the medians' 95% intervals
    speedup_high: float
    base_median_ms: float
    new_median_ms: float
    same_setup: bool  # same device, dtype, threads, batch and sequence length
    setup_differences: list[str] = field(default_factory=list)
    ops: list[OpDiff] = field(default_factory=list)
    max_abs_err: float | None = None  # output comparison, when outputs were compared
    cosine: float | None = None
    top1_agreement: float | None = None


_NESTED[("Comparison", "ops")] = OpDiff


@dataclass
class PassResult(_Dict):
    name: str
    applied: bool
    reason: str = ""  # why it did not apply (empty when applied)
    apply_s: float = 0.0  # time to apply, compile/calibration included: reported apart from steady-state latency
    warnings: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # e.g. sparsity, rank, layers changed


@dataclass
class Accuracy(_Dict):
    max_abs_err: float
    rel_err: float
    cosine: float
    top1_agreement: float | None  # None when the output is not a classifier's
    passed: bool
    kind: str = ""  # what was compared: "logits", "sentence-embedding", ...
    note: str = ""
    inputs: str = ""  # which inputs were compared: the held-out set, and the calibration set it is disjoint from


@dataclass
class OptimizeResult(_Dict):
    passes: list[PassResult]
    base_run_id: str
    optimized_run_id: str
    comparison: Comparison
    accuracy: Accuracy
    base_size_bytes: int = 0
    optimized_size_bytes: int = 0
    graph_diff: dict = field(default_factory=dict)  # op -> [base count, optimized count] where they differ


_NESTED[("OptimizeResult", "passes")] = PassResult
_NESTED[("OptimizeResult", "comparison")] = Comparison
_NESTED[("OptimizeResult", "accuracy")] = Accuracy
