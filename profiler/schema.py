"""The data contract between profiler, optimizers and dashboard: plain, JSON round-trippable dataclasses.

Units live in field names (_ms, _bytes, _flops). `from_dict` ignores unknown keys so a newer reader
still opens an older run, and `schema_version` lets the store refuse runs it cannot read.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
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


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any) -> Any:
    """`value` read from JSON, rebuilt as the type hint says: dataclasses, lists and dicts of them, optionals."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for a in options:  # the first dataclass option that a dict can build, else the value as it is
            if dataclasses.is_dataclass(a) and isinstance(value, dict):
                return _build(a, value)
        return _convert(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v) for v in value]
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(hint) or (Any, Any)
        return {k: _convert(item, v) for k, v in value.items()}
    return value


def _build(cls, data: dict[str, Any] | None):
    """Instantiate `cls` from a dict, following its type hints into nested dataclasses; unknown keys are ignored."""
    if data is None:
        return None
    hints = _hints(cls)
    return cls(**{f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data})


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
    cpu_isa: str = ""  # torch's CPU dispatch level (torch.backends.cpu.get_cpu_capability())
    kernels: str = ""  # the ISA oneDNN's GEMMs and fbgemm's int8 Linears use here
    emulated: list[str] = field(default_factory=list)  # precisions without instructions here (bf16 on AVX2)


@dataclass
class ModelInfo(_Dict):
    name: str
    source: str  # "registry", "file", "hf-dir", "hub", "torchscript", "export", "state-dict"
    parameters: int
    spec: str = ""
    task: str = ""
    dtype: str = "float32"
    size_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # what loading did not do as asked (a size the factory ignores)


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
class MachineLoad(_Dict):
    """How much CPU other processes (and, on a VM, the hypervisor) took while OpLens was timing (psutil: system-wide
    CPU time minus this process's own). `busy` when it is large enough to move a timing (profiler.measure.load)."""
    seconds: float  # wall time measured over
    cores: int  # logical CPUs
    other_cores: float  # mean CPUs kept busy by other processes
    steal_share: float = 0.0  # share of CPU time the hypervisor gave to other machines
    busy: bool = False
    text: str = ""  # one line for people, empty when quiet


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
    flops_known: bool = False  # a formula counted it, it runs inside a counted op, or it does no matmul-class work
    memory_bytes: float = 0.0  # self allocated bytes per inference
    bytes: float = (
        0.0  # bytes moved per inference: input + output tensor bytes of its dispatched calls (0: not counted)
    )
    input_shapes: list[str] = field(default_factory=list)  # distinct shapes, most frequent first
    category: str = "compute"  # "compute" or "transfer"
    dtype: str = ""  # imported traces: the dtype most of its counted time ran in (bf16, fp32, ...): its roof


@dataclass
class ShapeStat(_Dict):
    """One operator at one recorded signature (input dims, dtypes, concrete arguments): its work per call from the
    formulas (profiler.traces.formulas), the kernel time of its calls, and the rates it reached. Imported traces."""
    op: str
    shape: str  # input dims as recorded
    dtype: str = ""  # the first input's short dtype: bf16, fp32, fp8 ...
    family: str = ""  # gemm, conv, attention, norm, softmax, elementwise, reduction, copy; "" when no formula knows it
    params: str = ""  # what the formula read: "M=141 N=512 K=512 bias"
    calls: float = 0.0  # over the trace
    time_ms: float = 0.0  # kernel time over the trace (inclusive: kernels of the op and of its children)
    median_us: float = 0.0  # kernel time of the median call
    flops: float = 0.0  # per call
    bytes: float = 0.0  # per call (0: not known)
    known: bool = False  # a formula counted it
    tflops: float = 0.0  # achieved at the median call
    tbs: float = 0.0


@dataclass
class TransferStat(_Dict):
    direction: str  # "H2D", "D2H", "D2D", or "host" (host-side copies/layout changes on CPU)
    calls: float
    bytes: float
    time_ms: float
    bandwidth_gbps: float = 0.0
    label: str = ""
    op_ms: dict[str, float] = field(default_factory=dict)  # time by the operator that issued the copies (imports)


@dataclass
class Totals(_Dict):
    wall_ms: float
    exec_ms: float
    trans_ms: float
    coverage: float  # (exec + trans) / wall
    unexplained_ms: float = 0.0
    trans_label: str = ""
    flop_coverage: float | None = None  # share of exec time in ops whose FLOPs are known; None: not measured


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
    bytes: float = 0.0  # bytes moved: its inputs' and output's tensor bytes (0: not counted)


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
class KernelStat(_Dict):
    """Device work of one kind, grouped by name and the operator that launched it (totals over an imported trace)."""

    name: str
    calls: float
    time_ms: float
    op: str  # the launching operator; UNATTRIBUTED when the launch is not in the trace
    kind: str = "kernel"  # "kernel" or "memset" (memcpy is in transfers)
    comm: bool = False  # a communication (NCCL/RCCL) kernel


@dataclass
class ServingPhase(_Dict):
    """Prefill (SGLang EXTEND) or decode steps of an imported serving trace, from the engine's own annotations."""
    name: str  # "prefill" or "decode"
    steps: int = 0
    batch_size: int | None = None  # largest batch the annotations give (None when they give none)
    tokens: int | None = None  # tokens over all steps, where the annotations give them
    kernel_ms: float = 0.0  # GPU kernel time of the phase's steps
    top_kernels: list[KernelStat] = field(default_factory=list)
    source: str = ""  # "sglang" or "vllm"


@dataclass
class GpuTimeline(_Dict):
    """Per profiler step, averaged over `steps`: the GPU window and how it was spent (definitions: gpu_timeline.py)."""

    steps: int
    window_ms: float
    busy_ms: float
    idle_ms: float
    computation_ms: float
    comm_ms: float
    exposed_comm_ms: float
    memcpy_ms: float
    memset_ms: float
    idle_host_ms: float = 0.0  # the host had not launched the next work yet
    idle_sync_ms: float = 0.0  # the host was blocked in a synchronize / blocking copy
    idle_other_ms: float = 0.0
    idle_short_ms: float = 0.0  # gaps under timeline.SHORT_GAP_US between queued kernels (HTA's kernel wait)
    exposed_memcpy_ms: float = 0.0  # memcpy overlapped by neither computation nor communication
    kernels_shorter_than_launch: float = 0.0  # per step: kernels shorter than the runtime call that launched them
    launch_cpu_ms: float = 0.0  # per step: host time in the launch calls of the step's device work
    launch_overhead_ms: float = 0.0  # median of kernel start - its runtime call's start
    short_kernels: float = 0.0  # kernels under gpu_timeline.SHORT_KERNEL_US, per step
    window_source: str = ""  # "gpu-annotation", "cpu-step" or "gpu-span"
    step_window_ms: list[float] = field(default_factory=list)
    step_busy_ms: list[float] = field(default_factory=list)


@dataclass
class SkippedEvents(_Dict):
    what: str
    count: int
    why: str


@dataclass
class TraceValidation(_Dict):
    """What an import read and what it left out, so a partly understood trace says so."""

    files: list[str]
    events: int
    read: dict[str, int]  # events used, by kind (op, runtime, kernel, memcpy, memset, python, ...)
    skipped: list[SkippedEvents] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class RankStat(_Dict):
    """One rank of a multi-file (distributed) import."""

    rank: int
    file: str
    steps: int
    step_ms: float  # mean GPU window per step
    busy_ms: float
    computation_ms: float
    comm_ms: float
    exposed_comm_ms: float
    overlap: float  # share of communication overlapped by computation (0..1)
    straggler: bool = False
    note: str = ""
    collectives: int = 0  # collectives matched across ranks (the i-th of each rank is one collective)
    comm_transfer_ms: float = 0.0  # per step: the fastest rank's duration of each collective, summed
    comm_sync_ms: float = 0.0  # per step: the rest of this rank's collective time, waiting for the other ranks


@dataclass
class GenerateConfig(_Dict):
    """One greedy generation setting: `batch_size` prompts of `prompt_len` tokens, `new_tokens` generated each."""
    batch_size: int = 1
    prompt_len: int = 32
    new_tokens: int = 32
    cache: str = "dynamic"  # "dynamic" (grows per token) or "static" (allocated for prompt_len + new_tokens up front)
    dtype: str = "float32"
    device: str = "auto"
    warmup: int = 2  # whole generations, untimed
    repeats: int = 5  # minimum timed generations
    min_time_s: float = 1.0
    max_time_s: float = 120.0


@dataclass
class Spread(_Dict):
    """A distribution in the unit its field name gives (`tpot_ms`): robust statistics of the raw samples."""
    median: float = 0.0
    mean: float = 0.0
    p10: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    iqr: float = 0.0
    n: int = 0
    noise: str = "ok"


@dataclass
class PhaseStat(_Dict):
    """Prefill or decode of one generation (one prefill step; new_tokens - 1 decode steps), against its roof."""
    name: str  # "prefill" or "decode"
    steps: int = 0  # forward passes in the phase
    tokens: int = 0  # tokens fed to the model in the phase, over the batch
    ops: list[OpStat] = field(default_factory=list)  # per generation, from the profiled generation
    wall_ms: float = 0.0  # profiled wall time of the phase
    exec_ms: float = 0.0
    trans_ms: float = 0.0
    flops: float = 0.0  # counted by FlopCounterMode on an untimed generation
    bytes: float = 0.0  # modelled: weights read per step + KV cache written (prefill) or read (decode)
    roof: str = ""  # "compute" (prefill: FLOPs / GEMM peak) or "memory" (decode: bytes / bandwidth)
    floor_ms: float = 0.0  # the phase's time at that roof (max of the compute and memory bounds)
    measured_ms: float = 0.0  # unprofiled median: TTFT, or TPOT x steps
    roof_fraction: float = 0.0  # floor / measured: 1.0 would run at the machine's limit


@dataclass
class TrainConfig(_Dict):
    """How a training run was measured: `steps` timed steps after `warmup` untimed ones."""
    batch_size: int = 0  # 0: the model's own (a sample's, or the factory's default)
    seq_len: int = 0
    steps: int = 5
    warmup: int = 2
    optimizer: str = "adamw"  # training.OPTIMIZERS: sgd, sgd-foreach, adamw, adamw-foreach, adamw-fused
    lr: float = 1e-4
    workers: int = 0  # DataLoader num_workers
    pin_memory: bool = False
    dtype: str = "float32"  # "bfloat16" / "float16": autocast around forward and loss
    device: str = "auto"
    seed: int = 0
    memory: bool = True  # one more step under the memory profiler: the timeline by category
    accumulate: int = 1  # gradient accumulation: micro-batches per optimizer step (each batch_size / accumulate)


@dataclass
class TrainStep(_Dict):
    """One timed step: its wall time, the phases (from OpLens's markers) and the categories (TensorBoard's profiler
    plugin's, by priority: each instant of the step counts once, for the first category active then), both adding up
    to wall_ms."""
    wall_ms: float
    phases: dict[str, float] = field(default_factory=dict)  # data, forward, backward, optimizer, other (ms)
    categories: dict[str, float] = field(default_factory=dict)  # kernel ... DataLoader, CPU exec, other (ms)
    loss: float | None = None


@dataclass
class MemoryTimeline(_Dict):
    """Memory in use over one step by category (torch.profiler's memory categories), sampled to at most a few
    hundred points; times in ms from the step's start."""
    device: str
    times_ms: list[float] = field(default_factory=list)
    bytes: dict[str, list[float]] = field(default_factory=dict)  # category -> bytes in use at each time
    peak_bytes: float = 0.0
    peak_ms: float = 0.0
    peak_phase: str = ""  # the phase (forward, backward, optimizer, data) running at the peak
    peak_by_category: dict[str, float] = field(default_factory=dict)


@dataclass
class Training(_Dict):
    """A training run: per-step figures, the input-pipeline verdict and the memory timeline."""
    config: TrainConfig
    steps: list[TrainStep] = field(default_factory=list)
    wall: Spread = field(default_factory=lambda: Spread())
    phases: dict[str, float] = field(default_factory=dict)  # medians over the steps (ms)
    categories: dict[str, float] = field(default_factory=dict)
    data_share: float = 0.0  # median data wait / median step
    input_bound: bool = False
    verdict: str = ""
    memory: MemoryTimeline | None = None
    losses: list[float] = field(default_factory=list)  # every step's loss, warm-up included
    source: str = ""  # "live", "recorder" or "trace"


@dataclass
class Generation(_Dict):
    """Greedy generation measured step by step. Definitions:
    ttft = the prefill step (prompt in, first token out); tpot = one decode step (one token per sequence);
    e2e = the whole loop; tokens_per_s = batch x new_tokens / e2e (every generated token, prefill included);
    decode_tokens_per_s = batch / median tpot; prefill_tokens_per_s = batch x prompt_len / ttft.
    """
    config: GenerateConfig
    ttft_ms: float = 0.0  # medians over the timed generations
    tpot_ms: Spread = field(default_factory=Spread)  # over every decode step of every timed generation
    e2e_ms: float = 0.0
    tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    prefill_tokens_per_s: float = 0.0
    ttft: LatencyStats | None = None  # raw samples, one per timed generation
    e2e: LatencyStats | None = None
    steps_ms: list[list[float]] = field(default_factory=list)  # per timed generation: each decode step, in order
    itl_ms: list[float] = field(
        default_factory=list
    )  # median time of decode step i: inter-token latency as context grows
    context_lens: list[int] = field(default_factory=list)  # tokens in the cache when decode step i runs
    kv_cache_bytes: int = 0  # measured from the cache's tensors at the end of a generation
    kv_cache_formula_bytes: int = 0  # 2 x layers x kv_heads x head_dim x kv_cache_tokens x batch x element size
    kv_cache_tokens: int = 0  # per sequence: prompt + new - 1 (dynamic) or the allocated length (static)
    kv_bytes_per_token: float = 0.0  # measured: kv_cache_bytes / (kv_cache_tokens x batch); all layers, keys and values
    kv_layout: dict[str, int] = field(default_factory=dict)  # layers, heads, kv_heads, head_dim, element_bytes
    weight_bytes_per_step: int = 0  # parameter bytes one step reads (input embeddings excluded: only rows are read)
    decode_bytes_per_token: float = 0.0  # weights + KV cache read per decode step, mean over the steps
    decode_floor_ms: float = 0.0  # decode_bytes_per_token / measured memory bandwidth
    prefill_floor_ms: float = 0.0  # prefill FLOPs / measured GEMM peak (or its bytes / bandwidth, if larger)
    peak_gflops: float = 0.0
    mem_bw_gbs: float = 0.0
    peaks_source: str = ""
    memory: MemoryStats | None = None  # peak over the timed generations
    phases: list[PhaseStat] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)  # greedy tokens generated per sequence (prompt excluded)
    text: str = ""  # sequence 0's generated tokens as text, for a model with a tokenizer
    prompt_ids: list[list[int]] = field(default_factory=list)
    deterministic: bool = True  # every timed generation produced the same tokens
    notes: list[str] = field(default_factory=list)


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
    warnings: list[str] = field(default_factory=list)  # the measurement is suspect: empty inputs, NaN/Inf outputs
    versions: dict[str, str] = field(default_factory=dict)
    kernels: list[KernelStat] = field(default_factory=list)  # imported traces: device work by name and operator
    gpu: GpuTimeline | None = None  # imported GPU traces: the per-step timeline
    phases: list[ServingPhase] = field(default_factory=list)  # imported serving traces: prefill / decode steps
    validation: TraceValidation | None = None  # imported traces: what was read and skipped
    ranks: list[RankStat] = field(default_factory=list)  # multi-rank imports
    shapes: list[ShapeStat] = field(default_factory=list)  # imported traces: work per op and signature, most time first
    generation: Generation | None = None  # set by profiler.generate: the run measured a greedy generation
    training: Training | None = None  # set by profiler.train and record_training
    participant: str = ""  # who asked for it (a workshop participant's display name); empty from the CLI
    load: MachineLoad | None = None  # what other processes took while it was timed (live runs)
    schema_version: int = SCHEMA_VERSION




@dataclass
class Peaks(_Dict):
    """A machine's attainable limits: measured on this machine, or a GPU's published spec ("spec, not measured")."""
    device: str  # "cpu" or "cuda:0" ...
    name: str  # CPU model or GPU name
    source: str  # "measured" or "spec"
    threads: int = 0
    torch: str = ""
    fp32_gflops: float = 0.0
    bf16_gflops: float = 0.0
    fp16_gflops: float = 0.0
    int8_gops: float = 0.0  # int8 multiply-adds count as 2 operations, as FLOPs do
    tf32_gflops: float = 0.0  # GPUs: fp32 GEMMs with TF32 tensor cores allowed
    fp8_gflops: float = 0.0
    mem_bw_gbs: float = 0.0  # triad (a = b + s*c): the bandwidth a streaming kernel attains
    copy_bw_gbs: float = 0.0
    h2d_pinned_gbs: float = 0.0
    h2d_pageable_gbs: float = 0.0
    d2h_pinned_gbs: float = 0.0
    d2h_pageable_gbs: float = 0.0
    measured_at: str = ""
    notes: list[str] = field(default_factory=list)
    load: MachineLoad | None = None  # busy peaks are not cached as this machine's truth


@dataclass
class SweepPoint(_Dict):
    batch_size: int
    seq_len: int
    threads: int
    dtype: str
    device: str
    median_ms: float = 0.0
    p10_ms: float = 0.0
    p90_ms: float = 0.0
    iqr_ms: float = 0.0
    throughput_per_s: float = 0.0  # samples per second at the median latency
    peak_memory_bytes: int = 0
    memory_kind: str = ""
    error: str = ""  # why this point has no measurement (out of memory, ...)


@dataclass
class Sweep(_Dict):
    """Latency, throughput and peak memory of one model across sizes, threads, dtypes and devices."""
    id: str
    created: str
    model: str  # the model spec
    axes: dict[str, list] = field(default_factory=dict)  # the values swept: batch_size, seq_len, threads, dtype, device
    points: list[SweepPoint] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # knees and crossovers, in words
    device_name: str = ""
    notes: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION


@dataclass
class OpDiff(_Dict):
    name: str
    status: str  # "faster", "slower", "same", "new", "removed"
    base_ms: float
    new_ms: float
    delta_ms: float
    ratio: float  # base / new (>1 means faster)


@dataclass
class KernelDiff(_Dict):
    """Device time of one kernel name under its launching operator (and that operator's module, where known)."""
    op: str
    name: str
    status: str  # "faster", "slower", "same", "new", "removed"
    base_ms: float
    new_ms: float
    delta_ms: float
    base_calls: float = 0.0
    new_calls: float = 0.0
    module: str = ""
    kind: str = "kernel"


@dataclass
class TransferDiff(_Dict):
    direction: str  # "H2D", "D2H", "D2D", "host"
    base_ms: float
    new_ms: float
    delta_ms: float
    base_bytes: float = 0.0
    new_bytes: float = 0.0


@dataclass
class MetricDiff(_Dict):
    """One number of both runs (a GPU-timeline field, a module's own time): before, after and the change."""
    name: str
    base: float
    new: float
    delta: float


@dataclass
class Cause(_Dict):
    """One named reason two runs differ (profiler.analysis.explain): what changed, with its numbers, and its effect on
    the time per inference (delta_ms > 0: slower)."""
    kind: str  # "kernels", "conversions", "fusion", "faster", "slower", "outside-ops", "transfers"
    text: str
    delta_ms: float
    ops: list[str] = field(default_factory=list)


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
    kernels: list[KernelDiff] = field(default_factory=list)  # largest change first; empty when neither run has kernels
    transfers: list[TransferDiff] = field(default_factory=list)
    gpu: list[MetricDiff] = field(default_factory=list)  # GPU-timeline fields in ms per step, when both runs have one
    modules: list[MetricDiff] = field(default_factory=list)  # own time per module path (graph nodes), when known
    max_abs_err: float | None = None  # output comparison, when outputs were compared
    cosine: float | None = None
    top1_agreement: float | None = None
    verdict: str = ""  # "faster", "slower", or "inconclusive" when the speedup's range spans 1.0 (profiler.stats)
    load: MachineLoad | None = None  # other processes' CPU over both runs' timing




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


@dataclass
class Candidate(_Dict):
    """One pipeline a search tried: its timing against the unoptimized model, its accuracy, or why it was dropped."""
    passes: list[str]
    median_ms: float = 0.0
    speedup: float = 0.0
    speedup_low: float = 0.0
    speedup_high: float = 0.0
    apply_s: float = 0.0
    accuracy: Accuracy | None = None
    status: str = "ok"  # ok, inaccurate, not-applied, not-tried (emulated here), failed, timeout
    reason: str = ""


@dataclass
class HeadToHead(_Dict):
    """How much faster `passes` is than `single`, timed in alternation so the machine's drift hits both alike."""
    passes: list[str]
    single: list[str]
    speedup: float  # median over the rounds of (single's median / pipeline's median)
    speedup_low: float  # lowest and highest ratio among the rounds
    speedup_high: float
    rounds: int


@dataclass
class SearchResult(_Dict):
    base_median_ms: float
    best: Candidate | None
    leaderboard: list[Candidate] = field(default_factory=list)
    stopped: str = ""  # why the search ended
    elapsed_s: float = 0.0
    # the best pipeline against the best single pass, re-timed alternately at the end (see head_to_head)
    vs_best_single: HeadToHead | None = None
    base_run_id: str = ""  # set when the search saved its runs: the unoptimized model and the best pipeline
    best_run_id: str = ""
    # the best against the runner-up, re-timed alternately at the end: the verdict follows its range
    finalists: HeadToHead | None = None
    verdict: str = ""  # "confirmed", or "inconclusive" when the best's lead (or its gain) is within the noise
    verdict_text: str = ""  # one line: what was found, or why no winner can be named and what to do
    load: MachineLoad | None = None  # other processes' CPU while the search timed




@dataclass
class SavedComparison(_Dict):
    """An apply or a search, kept in the run store (runs/comparisons/<id>.json) so it can be listed and shown again.
    The headline (passes, speedup with its range, accuracy) is flat; the full result sits in `apply` or `search`."""
    id: str
    created: str
    kind: str  # "apply", "search", "generate" (an optimized generation: its results best first in `generation`) or
    # "train" (training passes: their results best agreeing first in `training`)
    model: str  # the model's display name
    spec: str  # how to load it again (profiler.load_model), with `arch` for a state dict
    config: ProfileConfig
    passes: list[str]  # the pipeline applied (apply) or the best one found (search); empty when none won
    base_run_id: str = ""
    optimized_run_id: str = ""
    speedup: float = 1.0  # base median / optimized median
    speedup_low: float = 1.0
    speedup_high: float = 1.0
    base_median_ms: float = 0.0
    new_median_ms: float = 0.0
    accuracy: Accuracy | None = None
    arch: str | None = None
    source_run_id: str = ""  # the saved run whose model and config this optimized, if any
    apply: OptimizeResult | None = None
    waterfall: list[dict] = field(default_factory=list)  # [{step, median_ms}] after each pass of an apply
    search: SearchResult | None = None
    error: str = ""  # set only by the store's listing, for a file it could not read
    participant: str = ""  # who asked for it (a workshop participant's display name); empty from the CLI
    generation: list[GenerationResult] = field(default_factory=list)  # kind "generate": best first
    training: list[TrainResult] = field(default_factory=list)  # kind "train": best agreeing first
    schema_version: int = SCHEMA_VERSION




@dataclass
class RooflinePoint(_Dict):
    """One operator (or graph node) against the machine's ceilings for the run's dtype."""
    name: str
    flops: float  # per inference
    bytes: float  # per inference
    intensity: float  # FLOPs per byte (0 when no bytes are known)
    time_ms: float  # measured self time per inference
    calls: float = 1.0
    achieved_gflops: float = 0.0
    achieved_gbs: float = 0.0
    compute_ms: float = 0.0  # FLOPs at the GEMM peak
    memory_ms: float = 0.0  # bytes at the memory bandwidth
    roof_ms: float = 0.0  # max(compute_ms, memory_ms): its time if it ran at its roof
    headroom_ms: float = 0.0  # time_ms - roof_ms, never below 0
    bound: str = "overhead"  # "compute", "memory", "overhead" (launch, dispatch, Python), "unknown" (work not recorded)
    bytes_source: str = "counted"  # "counted" (dispatcher), "shapes" (recorded input shapes) or "none"
    kind: str = "op"  # "op" or "node"
    percent_of_roof: float = 0.0  # roof_ms / time_ms x 100: how close it ran to its limit
    dtype: str = ""  # the ceiling's dtype for this point (imported traces: the op's own)


@dataclass
class Roofline(_Dict):
    """A run placed on its roofline: points, ceilings, and the whole model's floor latency at peak vs measured."""
    run_id: str
    dtype: str  # the ceiling's dtype: fp32, bf16, fp16 or int8
    peak_gflops: float
    mem_bw_gbs: float
    ridge_intensity: float  # FLOPs/byte where the compute and memory roofs meet
    peaks_source: str = ""
    points: list[RooflinePoint] = field(default_factory=list)
    nodes: list[RooflinePoint] = field(default_factory=list)
    measured_ms: float = 0.0  # median latency; an imported trace: its wall time, on the basis of its op totals
    floor_ms: float = 0.0  # every op at its roof, one after another
    headroom_ms: float = 0.0  # sum of the points' headroom
    time_by_bound: dict[str, float] = field(default_factory=dict)  # ms per bound; unexplained wall time is overhead
    verdict: str = ""  # the bound holding most of the time
    notes: list[str] = field(default_factory=list)
    measured_what: str = "median"  # what measured_ms is: "median", or "wall time of the trace (6 steps)"


@dataclass
class Recommendation(_Dict):
    """A rule that fired over a run: what to do, why, which passes do it, the estimate, and once applied the result."""
    rule: str
    title: str
    evidence: str
    passes: list[str] = field(default_factory=list)  # empty: advice no pass applies (e.g. a larger batch)
    estimated_speedup: float = 1.0  # from the roofline, scaled by this machine's history for these passes
    raw_estimate: float = 1.0  # before the history scaling
    measured_speedup: float | None = None
    measured_accuracy: dict | None = None  # cosine, max_abs_err, top1_agreement of the applied model
    comparison_id: str = ""
# ---------------------------------------------------------------- optimizing generation (optimizers.generation)

@dataclass
class Ratio(_Dict):
    """A speedup (base / optimized) with the range of the paired per-round ratios."""
    median: float = 0.0
    p10: float = 0.0
    p90: float = 0.0
    rounds: int = 0


@dataclass
class GenerationSide(_Dict):
    """One model's generation figures from the side-by-side timing."""
    ttft_ms: Spread = field(default_factory=Spread)
    tpot_ms: Spread = field(default_factory=Spread)
    e2e_ms: Spread = field(default_factory=Spread)
    tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0


@dataclass
class GenerationResult(_Dict):
    """optimize_generation's answer: passes, both sides, speedups with ranges, accuracy."""
    model: str = ""
    config: GenerateConfig = field(default_factory=GenerateConfig)
    passes: list[PassResult] = field(default_factory=list)
    base: GenerationSide = field(default_factory=GenerationSide)
    optimized: GenerationSide = field(default_factory=GenerationSide)
    ttft_speedup: Ratio = field(default_factory=Ratio)
    tpot_speedup: Ratio = field(default_factory=Ratio)  # = decode tokens/s ratio
    e2e_speedup: Ratio = field(default_factory=Ratio)  # = tokens/s ratio
    token_agreement: float = 0.0  # free-running greedy tokens equal at the same position, over all generated tokens
    forced_agreement: float = 0.0  # teacher-forced: the optimized model's greedy pick given the base's prefix
    forced_prompts: int = 1  # prompts the teacher-forced figure is over (the timed one, then held-out ones)
    base_text: str = ""  # the timed generation decoded, for models with a tokenizer (first sequence)
    optimized_text: str = ""
    prefill_cosine: float = 0.0  # cosine of the prefill's last-position logits
    perplexity_base: float | None = None
    perplexity_optimized: float | None = None
    accurate: bool = False
    device: str = ""
    threads: int = 0
    torch_version: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainResult(_Dict):
    """optimizers.training.compare's answer: one training pipeline against the base, from the same weights, samples
    and dropout masks. Speed is time per sample (a larger batch is judged per sample); the loss agrees when the
    held-out loss and the curve at equal samples seen are within the stated tolerances."""
    passes: list[str]
    notes: list[str] = field(default_factory=list)
    speedup: Ratio = field(default_factory=Ratio)  # base / optimized time per sample, over ABBA rounds
    base_ms: float = 0.0  # median step time
    new_ms: float = 0.0
    base_batch: int = 0
    new_batch: int = 0
    base_losses: list[float] = field(default_factory=list)  # the curve, one loss per step
    new_losses: list[float] = field(default_factory=list)
    base_heldout: float = 0.0  # a batch neither trained on, in eval mode
    new_heldout: float = 0.0
    curve_gap: float = 0.0  # largest |new - base| over the curve, at equal samples seen, / the base curve's mean
    agrees: bool = False
    base_peak_bytes: float = 0.0  # one step's peak under the memory profiler
    new_peak_bytes: float = 0.0
    verdict: str = ""
    memory_pass: bool = False  # it trades time for peak memory: judge it by the peak
    tolerance: str = ""  # the loss tolerances it was judged by, in words

