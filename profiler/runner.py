"""profiler.profile: the one place that touches the device. Loads nothing, draws nothing: LoadedModel in, ProfileRun
out."""

from __future__ import annotations

import copy
import datetime as _dt
import os
import re
import statistics
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Protocol

import torch
from torch.profiler import (
    ProfilerActivity,
    profile as torch_profile,
    record_function,
    schedule,
    tensorboard_trace_handler,
)

from . import checks, devices, flops as flops_mod, graph as graph_mod, ops as ops_mod
from .loading import LoadedModel
from .lock import measurement_lock
from .schema import Graph, MemoryStats, ModelRunError, OpLensError, ProfileCancelled, ProfileConfig, ProfileRun
from .timing import measure, noise_message, summarize

Progress = Callable[[str, float], None]

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


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


class _RssSampler:
    """Peak process RSS while inference runs (CPU peak memory); psutil polled from a thread."""

    def __init__(self, period_s: float = 0.005):
        import psutil

        self.proc, self.period, self.peak, self.baseline = psutil.Process(), period_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.period)

    def __enter__(self):
        self.baseline = self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@contextmanager
def _memory_tracker(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        stats = MemoryStats(kind="cuda-allocator", baseline_bytes=torch.cuda.memory_allocated(device))
        yield stats
        stats.peak_bytes = torch.cuda.max_memory_allocated(device)
    else:
        with _RssSampler() as sampler:
            stats = MemoryStats(kind="process-rss")
            yield stats
        stats.peak_bytes, stats.baseline_bytes = sampler.peak, sampler.baseline


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
    device = devices.resolve_device(config.device)
    dtype = _DTYPES.get(config.dtype)
    if dtype is None:
        raise ModelRunError(f"unknown dtype '{config.dtype}': use float32, bfloat16 or float16")
    say = progress or (lambda stage, frac: None)

    def check_cancel():
        if cancel is not None and cancel.is_set():
            raise ProfileCancelled("profiling cancelled")

    try:
        module, host_args, host_kwargs = prepare(loaded, device, dtype)
    except Exception as exc:  # noqa: BLE001
        raise _friendly(exc, device, loaded) from None
    on_cuda = device.type == "cuda"
    if on_cuda and loaded.run_options.pin_memory:  # page-locked host buffers: async, faster uploads
        host_args, host_kwargs = map_tensors((host_args, host_kwargs), lambda t: t.pin_memory())
    upload = (lambda x: map_tensors(x, lambda t: t.to(device, non_blocking=True))) if on_cuda else (lambda x: x)
    resident = (upload(host_args), upload(host_kwargs))
    inputs_on_device = config.inputs_on_device or loaded.run_options.inputs_on_device
    stopwatch = devices.Stopwatch(device)

    def inference():
        args, kwargs = resident if inputs_on_device else (upload(host_args), upload(host_kwargs))
        return module(*args, **kwargs)

    def timed(samples: list[float]):
        check_cancel()
        with stopwatch.time(samples):
            inference()

    def waiting(seconds: float):
        check_cancel()
        say(f"waiting for another measurement to finish ({seconds:.0f} s)", 0.0)

    info = devices.device_info(device)
    notes: list[str] = []
    try:
        with torch.inference_mode():
            say("checking the model runs", 0.0)
            first = inference()  # a first call outside the lock: a model that fails, fails fast and holds nobody up
            warnings = checks.input_warnings(host_args, host_kwargs) + checks.output_warnings(first)
            del first
        with measurement_lock(waiting), torch.inference_mode():
            with _memory_tracker(device) as memory:
                latency = measure(timed, config.warmup, config.repeats, config.min_time_s, config.max_time_s,
                                  tick=lambda f: (check_cancel(), say("timing", 0.05 + 0.45 * f)))
            say("recording operators", 0.5)
            trace_dir = tempfile.mkdtemp(prefix="oplens-trace-")
            events, detail, profiled_samples, paired_samples = _record_ops(
                inference, stopwatch, config.profile_iters, device, trace_dir, check_cancel
            )
            say("counting FLOPs", 0.65)
            # untimed: one more inference under FlopCounterMode, counting bytes moved per op too (roofline)
            dispatched, moved = flops_mod.dispatch_counts_and_bytes(inference)
            say("timing graph nodes", 0.7)
            graph = _graph(loaded, module, resident, config, device, notes, check_cancel)
    except OpLensError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model's own failure, reported in words
        raise _friendly(exc, device, loaded) from None
    say("summarising", 0.95)
    iters = config.profile_iters
    op_flops = flops_mod.count_events(detail, dispatched, is_op=ops_mod.is_op_event)
    op_stats = ops_mod.op_stats(events, iters, on_cuda, detail, flops=op_flops)
    for o in op_stats:
        o.bytes = moved.get(o.name, 0.0)
    transfers = ops_mod.transfer_stats(events, iters, on_cuda, detail)
    profiled = summarize(profiled_samples)
    # op sums are means over the recorded iterations: reconcile with their mean wall time
    totals = ops_mod.totals(op_stats, profiled.mean_ms, on_cuda, flops_mod.coverage(op_stats))
    paired = summarize(paired_samples)
    if msg := noise_message(latency):
        notes.append(msg)
    traces = [os.path.join(trace_dir, f) for f in os.listdir(trace_dir) if f.endswith((".json", ".json.gz"))]
    kernels, gpu = [], None
    if on_cuda and traces:
        # device work from the run's own trace, by the analysis imported traces get: memcpy events carry their bytes
        # and direction (the profiler's op events did not: an H200 run showed 0-byte uploads and a D2H as D2D)
        from .trace_import import device_figures

        try:
            traced, kernels, gpu = device_figures(traces[0])
            transfers = traced or transfers
        except OpLensError as exc:
            notes.append(f"kernels and GPU timeline not read from the trace: {exc}")
    config_out = copy.copy(config)
    config_out.batch_size, config_out.seq_len = loaded.batch_size, loaded.seq_len
    config_out.device = str(device)
    run = ProfileRun(
        id=new_run_id(loaded.info.name), created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        model=copy.copy(loaded.info), device=info, config=config_out, latency=latency, totals=totals, ops=op_stats,
        transfers=transfers, graph=graph, memory=memory, profiled_latency=profiled, paired_latency=paired,
        overhead_ratio=_median_ratio(profiled_samples, paired_samples), trace_path=traces[0] if traces else None,
        notes=notes, warnings=warnings, versions=_versions(), kernels=kernels, gpu=gpu)
    say("done", 1.0)
    return run


def _record_ops(inference, stopwatch, pairs: int, device, trace_dir: str, check_cancel):
    """Interleave `pairs` unprofiled and profiled inferences, so drift in machine speed hits both alike.

    Each profiled inference gets its own short profiler session (one warm-up step, one recorded step); the first
    session's Kineto trace is written to `trace_dir`. Timed sessions record memory but not shapes (that slows ops by
    10-20%); one more, untimed session records them, and FLOPs are counted from its shapes (profiler.flops).
    Returns (timed events, detail events, profiled ms, paired unprofiled ms).
    """
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    worker = f"{os.uname().nodename}_{os.getpid()}"
    events, profiled, plain = [], [], []
    for i in range(pairs):
        check_cancel()
        if i % 2 == 0:  # ABBA order: a steady drift in machine speed cancels out of the pair ratios
            with stopwatch.time(plain):
                inference()
        handler = tensorboard_trace_handler(trace_dir, worker_name=worker, use_gzip=True) if i == 0 else None
        with torch_profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1, repeat=1),
                           on_trace_ready=handler, profile_memory=True) as prof:
            for step in range(2):
                with stopwatch.time(profiled if step == 1 else []), record_function("oplens.inference"):
                    inference()
                prof.step()
        events.extend(prof.events())
        if i % 2 == 1:
            with stopwatch.time(plain):
                inference()
    check_cancel()
    with torch_profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1, repeat=1),
                       record_shapes=True) as prof:
        for _ in range(2):
            inference()
            prof.step()
    return events, prof.events(), profiled, plain


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


def _median_ratio(num: list[float], den: list[float]) -> float:
    """Median of pairwise ratios: robust to the machine getting faster or slower between pairs."""
    ratios = [a / b for a, b in zip(num, den) if b > 0]
    return statistics.median(ratios) if ratios else 0.0


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for name in ("transformers", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out
