"""profiler.profile: the one place that touches the device. Loads nothing, draws nothing: LoadedModel in, ProfileRun
out. It reads top to bottom: a Session prepares the model and measures it (timed repeats with peak memory, the
profiled inferences written as one Kineto trace, FLOPs, the graph); assemble() turns those measurements into the run,
reading per-op, transfer and kernel figures from the run's own trace with the analysis imported traces get."""

from __future__ import annotations

import copy
import datetime as _dt
import os
import re
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from torch.profiler import ProfilerActivity, record_function, schedule
from torch.profiler import profile as torch_profile

from profiler import devices, store
from profiler.measure import checks
from profiler.measure import flops as flops_mod
from profiler.measure import graph as graph_mod
from profiler.measure import ops as ops_mod
from profiler.measure.load import LoadMeter
from profiler.measure.lock import measurement_lock
from profiler.measure.memory import memory_tracker
from profiler.measure.timing import measure
from profiler.models.loaded import LoadedModel, RuntimeOps, runtime_of
from profiler.schema import (
    Graph,
    LatencyStats,
    MachineLoad,
    MemoryStats,
    ModelRunError,
    OpLensError,
    ProfileCancelled,
    ProfileConfig,
    ProfileRun,
)
from profiler.stats import noise_message, summarize
from profiler.traces import read as traces_mod
from profiler.traces.figures import TraceFigures, trace_figures

Progress = Callable[[str, float], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


def new_run_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "model"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:6]}"


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply fn to every tensor in a nested structure (args tuples, kwargs dicts), keeping everything else."""
    return torch.utils._pytree.tree_map(lambda x: fn(x) if isinstance(x, torch.Tensor) else x, obj)


def _cast_input(dtype: torch.dtype):
    return lambda t: t.to(dtype) if t.is_floating_point() else t


def _friendly(exc: BaseException, device: torch.device, loaded: LoadedModel) -> ModelRunError:
    if devices.is_oom(exc):
        return ModelRunError(devices.oom_message(
            exc, f"{loaded.info.name} on {device} at batch size {loaded.batch_size}", "--batch-size or --seq-len"))
    text = str(exc).strip().splitlines()
    msg = text[0][:300] if text else ""
    if isinstance(exc, (RuntimeError, ValueError, IndexError, TypeError)) and any(
            k in msg for k in ("shape", "size", "dimension", "mat1", "expected", "argument", "index out of range")):
        return ModelRunError(f"{loaded.info.name} rejected its inputs ({type(exc).__name__}: {msg}); check the input "
                             "shapes, batch size and sequence length")
    return ModelRunError(f"{loaded.info.name} raised {type(exc).__name__} while running: {msg}")


def prepare(loaded: LoadedModel, device: torch.device, dtype: torch.dtype):
    """The module on the device in the dtype (a copy when that changes it: the caller's model stays as it was),
    and the example inputs on the host, cast to the dtype."""
    module = loaded.module
    first = next(iter(module.parameters()), None)
    # float32 means "as the model is": a model an optimizer pass already cast to bf16 keeps its dtype and inputs
    cast = dtype != torch.float32 and first is not None and first.is_floating_point() and first.dtype != dtype
    if first is not None and (first.device != device or cast):
        module = copy.deepcopy(module).to(device=device)
        if cast:
            module = module.to(dtype)
    if dtype == torch.float32:
        return module, loaded.args, loaded.kwargs
    return module, *map_tensors((loaded.args, loaded.kwargs), _cast_input(dtype))


def profile(loaded: LoadedModel, config: ProfileConfig | None = None, progress: Progress | None = None,
            cancel: CancelToken | None = None) -> ProfileRun:
    """Measure latency, per-op times, transfers and the graph of one model, under the machine-wide lock."""
    config = config or ProfileConfig()
    say = progress or (lambda stage, frac: None)
    session = Session(loaded, config, say, cancel)
    measured = session.measure()
    say("summarising", 0.95)
    run = assemble(loaded, config, session.device, measured)
    say("done", 1.0)
    return run


# ---------------------------------------------------------------- the measurement session

@dataclass
class Recorded:
    """The profiled inferences: their Kineto trace (one profiler step per inference) and the untimed detail pass."""

    trace_path: str | None
    steps: int
    detail: list  # torch.profiler events of one inference recorded with shapes and memory
    profiled_ms: list[float]  # wall time of each profiled inference
    plain_ms: list[float]  # unprofiled inferences interleaved with them


@dataclass
class Measured:
    """Everything one measurement session produced, before any analysis."""

    latency: LatencyStats
    memory: MemoryStats
    recorded: Recorded
    dispatched_flops: dict[str, float]
    moved_bytes: dict[str, float]
    graph: Graph
    warnings: list[str]
    notes: list[str]
    load: MachineLoad | None = None
    runtime: RuntimeOps | None = None  # the module's own runtime profiler's figures (models.loaded.runtime_of)


class Session:
    """One model on one device, ready to run: the prepared module, its inputs, and how to time an inference."""

    def __init__(self, loaded: LoadedModel, config: ProfileConfig, say: Progress, cancel: CancelToken | None):
        self.loaded, self.config, self.say, self.cancel = loaded, config, say, cancel
        self.device = devices.resolve_device(config.device)
        dtype = devices.resolve_dtype(config.dtype)
        try:
            self.module, host_args, host_kwargs = prepare(loaded, self.device, dtype)
        except Exception as exc:  # noqa: BLE001
            raise _friendly(exc, self.device, loaded) from None
        if self.device.type == "cuda" and loaded.run_options.pin_memory:  # page-locked: async, faster uploads
            host_args, host_kwargs = map_tensors((host_args, host_kwargs), lambda t: t.pin_memory())
        self.host = (host_args, host_kwargs)
        self.resident = (self._upload(host_args), self._upload(host_kwargs))
        self.inputs_on_device = config.inputs_on_device or loaded.run_options.inputs_on_device
        self.stopwatch = devices.Stopwatch(self.device)

    def _upload(self, x):
        if self.device.type != "cuda":
            return x
        return map_tensors(x, lambda t: t.to(self.device, non_blocking=True))

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise ProfileCancelled("profiling cancelled")

    def inference(self):
        if self.inputs_on_device:
            args, kwargs = self.resident
        else:  # the upload is part of an inference, as it is in serving
            args, kwargs = self._upload(self.host[0]), self._upload(self.host[1])
        return self.module(*args, **kwargs)

    def _timed(self, samples: list[float]) -> None:
        self.check_cancel()
        with self.stopwatch.time(samples):
            self.inference()

    def _waiting(self, seconds: float) -> None:
        self.check_cancel()
        self.say(f"waiting for another measurement to finish ({seconds:.0f} s)", 0.0)

    def measure(self) -> Measured:
        """Check the model runs, then under the lock: timed repeats (with peak memory), the profiled inferences,
        FLOPs and bytes per op, and the graph. A failure of the model's own is a ModelRunError in words."""
        config, say, notes = self.config, self.say, []
        try:
            with torch.inference_mode():
                say("checking the model runs", 0.0)
                first = self.inference()  # outside the lock: a model that fails, fails fast and holds nobody up
                warnings = checks.input_warnings(*self.host) + checks.output_warnings(first)
                del first
            with measurement_lock(self._waiting), torch.inference_mode():
                meter = LoadMeter()  # what other processes take while we time
                with memory_tracker(self.device) as memory:
                    latency = measure(self._timed, config.warmup, config.repeats, config.min_time_s,
                                      config.max_time_s,
                                      tick=lambda f: (self.check_cancel(), say("timing", 0.05 + 0.45 * f)))
                say("recording operators", 0.5)
                recorded = record_ops(self.inference, self.stopwatch, config.profile_iters, self.device,
                                      self.check_cancel)
                load = meter.result()
                say("counting FLOPs", 0.65)
                # untimed: one more inference under FlopCounterMode, counting bytes moved per op too (roofline)
                dispatched, moved = flops_mod.dispatch_counts_and_bytes(self.inference)
                runtime, runtime_ops = runtime_of(self.module), None
                if runtime is not None:  # it runs outside torch: its ops and graph come from its own profiler
                    say("profiling the runtime's operators", 0.7)
                    runtime_ops = runtime.profile_ops(*self.host, max(1, config.profile_iters))
                    notes += runtime_ops.notes
                    graph = runtime_ops.graph if runtime_ops.graph is not None and config.graph else Graph(
                        method="none", note="graph capture switched off" if runtime_ops.graph else
                        "the runtime did not say which graph it ran")
                else:
                    say("timing graph nodes", 0.7)
                    graph = _graph(self.loaded, self.module, self.resident, config, self.device, notes,
                                   self.check_cancel)
        except OpLensError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model's own failure, reported in words
            raise _friendly(exc, self.device, self.loaded) from None
        return Measured(latency=latency, memory=memory, recorded=recorded, dispatched_flops=dispatched,
                        moved_bytes=moved, graph=graph, warnings=warnings, notes=notes, load=load,
                        runtime=runtime_ops)


def record_ops(inference: Callable[[], Any], stopwatch: devices.Stopwatch, pairs: int, device: torch.device,
               check_cancel: Callable[[], None]) -> Recorded:
    """Interleave `pairs` unprofiled and profiled inferences, so drift in machine speed hits both alike.

    Each profiled inference gets its own short profiler session (one warm-up step, one recorded step); their traces
    are joined into one Kineto trace, one profiler step per inference, which the run's per-op figures are read from.
    Timed sessions record memory but not shapes (that slows ops by 10-20%); one more, untimed session records shapes
    and memory per op, and FLOPs are counted from its shapes (profiler.measure.flops).
    """
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sessions_dir = tempfile.mkdtemp(prefix="oplens-sessions-")
    sessions: list[str] = []
    profiled: list[float] = []
    plain: list[float] = []
    try:
        for i in range(pairs):
            check_cancel()
            if i % 2 == 0:  # ABBA order: a steady drift in machine speed cancels out of the pair ratios
                with stopwatch.time(plain):
                    inference()
            with torch_profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1, repeat=1),
                               profile_memory=True) as prof:
                for step in range(2):
                    with stopwatch.time(profiled if step == 1 else []), record_function("oplens.inference"):
                        inference()
                    prof.step()
            sessions.append(os.path.join(sessions_dir, f"{i}.json"))
            prof.export_chrome_trace(sessions[-1])
            if i % 2 == 1:
                with stopwatch.time(plain):
                    inference()
        check_cancel()
        with torch_profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1, repeat=1),
                           record_shapes=True, profile_memory=True) as prof:
            for _ in range(2):
                inference()
                prof.step()
        trace = None
        if sessions:
            worker = f"{os.uname().nodename}_{os.getpid()}"
            out = os.path.join(store.temp_trace_dir(), traces_mod.trace_file_name(worker))
            trace = str(traces_mod.merge_sessions(sessions, out))
    finally:
        shutil.rmtree(sessions_dir, ignore_errors=True)
    return Recorded(trace_path=trace, steps=len(sessions), detail=list(prof.events()), profiled_ms=profiled,
                    plain_ms=plain)


# ---------------------------------------------------------------- the run

def assemble(loaded: LoadedModel, config: ProfileConfig, device: torch.device, m: Measured) -> ProfileRun:
    """The ProfileRun from one session's measurements: per-op, transfer, kernel and GPU figures read from the
    session's own trace (the analysis an imported trace gets), plus what only a live run knows."""
    on_cuda, rec, notes = device.type == "cuda", m.recorded, list(loaded.info.notes) + list(m.notes)
    if m.runtime is not None:  # the torch trace saw one opaque call: the runtime's own ops replace it
        figs = TraceFigures(m.runtime.ops, [], [], None)
    else:
        figs = _trace_figures(rec, notes)
        op_flops = flops_mod.count_events(rec.detail, m.dispatched_flops, is_op=ops_mod.is_op_event)
        ops_mod.add_detail(figs.ops, rec.detail, on_cuda, op_flops, m.moved_bytes)
    transfers = figs.transfers if on_cuda else ops_mod.host_transfers(figs.ops, rec.detail)
    profiled = summarize(rec.profiled_ms)
    # op sums are means over the recorded iterations: reconcile with their mean wall time (a runtime's own profiled
    # inferences, when its profiler gave the ops)
    wall_ms = m.runtime.wall_ms if m.runtime is not None and m.runtime.wall_ms else profiled.mean_ms
    totals = ops_mod.totals(figs.ops, wall_ms, on_cuda, flops_mod.coverage(figs.ops))
    if msg := noise_message(m.latency):
        notes.append(msg)
    if m.load is not None and m.load.busy:
        notes.append(m.load.text)
    config_out = copy.copy(config)
    config_out.batch_size, config_out.seq_len = loaded.batch_size, loaded.seq_len
    config_out.device = str(device)
    run = ProfileRun(
        id=new_run_id(loaded.info.name), created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        model=copy.copy(loaded.info), device=devices.device_info(device), config=config_out, latency=m.latency,
        totals=totals, ops=figs.ops, transfers=transfers, graph=m.graph, memory=m.memory, profiled_latency=profiled,
        paired_latency=summarize(rec.plain_ms), overhead_ratio=_median_ratio(rec.profiled_ms, rec.plain_ms),
        trace_path=rec.trace_path, notes=notes, warnings=m.warnings, versions=devices.library_versions(),
        kernels=figs.kernels, gpu=figs.gpu, load=m.load)
    if m.runtime is not None and m.runtime.runtime:  # the run's figures are that runtime's, not PyTorch's
        run.versions["runtime"] = m.runtime.runtime
    return run


def _trace_figures(rec: Recorded, notes: list[str]) -> TraceFigures:
    """Per-inference figures from the run's own trace; empty, with a note, when there is none or it is unreadable."""
    if rec.trace_path is None:
        notes.append("no inference was profiled (profile iterations 0): no per-operator figures")
        return TraceFigures([], [], [], None)
    try:
        return trace_figures(rec.trace_path).per_step(rec.steps)
    except OpLensError as exc:
        notes.append(f"per-operator figures not read from the run's trace: {exc}")
        return TraceFigures([], [], [], None)


def _median_ratio(num: list[float], den: list[float]) -> float:
    """Median of pairwise ratios: robust to the machine getting faster or slower between pairs."""
    ratios = [a / b for a, b in zip(num, den) if b > 0]
    return statistics.median(ratios) if ratios else 0.0


def _graph(
    loaded: LoadedModel, module, resident, config: ProfileConfig, device, notes: list[str], check_cancel
) -> Graph:
    if not config.graph:
        return Graph(method="none", note="graph capture switched off")
    check_cancel()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    args, kwargs = resident
    captured = graph_mod.capture(module, args, kwargs, exported=loaded.traits.exported)
    try:
        return graph_mod.profile_graph(captured, module, args, kwargs, device, max(1, min(config.profile_iters, 3)),
                                       activities)
    except Exception as exc:  # noqa: BLE001 - a graph that runs differently from eager: keep the run, say why
        notes.append(f"graph timing failed ({type(exc).__name__}: {str(exc)[:200]}); showing the module tree")
        return graph_mod.profile_graph(graph_mod.Captured("module-tree", None, None, captured.note), module, args,
                                       kwargs, device, 1, activities)
