"""This machine's attainable limits, measured once and cached: GEMM throughput per dtype, memory bandwidth, and on a
GPU host<->device copy bandwidth. A GPU named in an imported trace gets its published spec instead, marked so.

Peaks are *attainable* figures (the best of several timed repeats of a large, well-shaped kernel), the ceilings a
roofline places operators against. The cache key is the machine, torch version, thread count, device and how peaks
are measured (METHOD): a change in any of them measures again.

The fp32, bf16 and int8 GEMMs take turns, one call each per round, because their *ratios* decide which precision is
recommended: measured one after another on a shared machine, a neighbour's burst can land on one kind only (Zen 4,
2 shared cores: bf16 227 vs int8 195 one after another under load, 430 vs 685 taking turns; on BERT-base the
dynamic-int8 pass measured 2.78x, bf16 1.53x). On a CPU the int8 figure is the kernel the int8 passes run: a
dynamically quantized Linear (activations quantized per call), not a bare int8 GEMM the passes never reach.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from profiler import devices, store
from profiler import op_categories as oc
from profiler.measure.load import LoadMeter
from profiler.measure.lock import measurement_lock
from profiler.schema import Peaks, ProfileRun

GEMM_N = {"fp32": 2048, "bf16": 2048, "fp16": 1024, "int8": 2048}  # a CPU: a second or less each
# a precision this CPU emulates runs ~500x slower (Zen 3: bf16 0.28 GFLOP/s, one 2048^3 GEMM a minute): a GEMM this
# size still shows how slow it is, in a tenth of a second
EMULATED_N = 256
_GEMM_N_GPU = 8192  # an H200 reached only half its bf16 peak at 2048 (383 of ~790 TFLOP/s): the launch dominates
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_BW_BYTES = 256 * 2**20
_TURNS = ("fp32", "bf16", "int8")  # measured taking turns (fp16 on a CPU takes seconds a call: measured alone)
METHOD = "turns-v3"  # part of the cache key: peaks cached by an older method are measured again


def cache_path() -> Path:
    return store.cache_root() / "peaks.json"


def cache_key(device: torch.device, threads: int | None = None) -> str:
    """Which cached peaks belong to this machine, torch, thread count (default: this process's) and METHOD."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else devices.cpu_name()
    return f"{name}|torch {torch.__version__}|{threads or torch.get_num_threads()} threads|{device}|{METHOD}"


def best_seconds_each(fns: dict[str, Callable[[], None]], sync: Callable[[], None], min_time_s: float = 0.25,
                      repeats: int = 3, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Shortest timed call of each function, the functions taking turns (one call each per round) until every one has
    `repeats` calls and `min_time_s` of timed time: load from other processes then falls on each alike."""
    best = {k: float("inf") for k in fns}
    spent = {k: 0.0 for k in fns}
    for rounds in range(1, 51):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            sync()
            dt = clock() - t0
            best[k], spent[k] = min(best[k], dt), spent[k] + dt
        if rounds >= repeats and min(spent.values()) >= min_time_s:
            break
    return best


def _best_seconds(fn: Callable[[], None], sync: Callable[[], None], min_time_s: float = 0.25,
                  repeats: int = 3) -> float:
    """Shortest of the timed calls of one function (after one warm-up)."""
    fn()
    sync()
    return best_seconds_each({"one": fn}, sync, min_time_s, repeats)["one"]


def gemm(kind: str, device: torch.device) -> tuple[Callable[[], None], int]:
    """(a call of the `kind` GEMM, its FLOPs or int8 ops): N x N x N."""
    n = (_GEMM_N_GPU if device.type == "cuda" else EMULATED_N if kind in devices.emulated_precisions()
         else GEMM_N[kind])
    g = torch.Generator(device="cpu").manual_seed(0)
    if kind == "int8" and device.type == "cpu":
        # what dynamic-int8 / accuracy-int8 Linears call: the x86 engine's int8 kernel, activations quantized per call
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantize_per_channel's deprecation notice
            w = torch.quantize_per_channel(torch.randn(n, n, generator=g), torch.full((n,), 0.02),
                                           torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(w, None)
        x = torch.randn(n, n, generator=g)
        return (lambda: torch.ops.quantized.linear_dynamic(x, packed, True)), 2 * n**3
    if kind == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=g).to(device)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=g).to(device)
        return (lambda: torch._int_mm(a, b)), 2 * n**3  # the int8 x int8 -> int32 GEMM int8 linears lower to
    a = torch.randn(n, n, generator=g).to(device, _DTYPES[kind])
    b = torch.randn(n, n, generator=g).to(device, _DTYPES[kind])
    return (lambda: torch.mm(a, b)), 2 * n**3


def gemm_rates(kinds, device: torch.device, sync, peaks: Peaks) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) per kind, the kinds taking turns; a kind this build cannot run is noted and left
    out."""
    fns, work = {}, {}
    for kind in kinds:
        try:
            fn, work[kind] = gemm(kind, device)
            fn()  # the warm-up, and the check that this build has the kernel
            sync()
        except (RuntimeError, NotImplementedError) as exc:
            peaks.notes.append(f"{kind} GEMM not measured: {str(exc).splitlines()[0][:120]}")
            continue
        fns[kind] = fn
    return {k: work[k] / s / 1e9 for k, s in best_seconds_each(fns, sync).items()} if fns else {}


def _bandwidth(device: torch.device, sync) -> tuple[float, float]:
    """(triad GB/s, copy GB/s) over arrays far larger than any cache."""
    n = _BW_BYTES // 4
    a, b, c = (torch.full((n,), v, device=device) for v in (1.0, 2.0, 3.0))
    copy = 2 * n * 4 / _best_seconds(lambda: b.copy_(a), sync) / 1e9
    triad = 3 * n * 4 / _best_seconds(lambda: torch.add(b, c, alpha=3.0, out=a), sync) / 1e9
    return triad, copy


def _transfer(device: torch.device, sync) -> dict[str, float]:
    n = _BW_BYTES // 4
    out = {}
    for pinned in (True, False):
        host = torch.ones(n, pin_memory=pinned)
        dev = torch.empty(n, device=device)
        label = "pinned" if pinned else "pageable"
        out[f"h2d_{label}_gbs"] = n * 4 / _best_seconds(lambda: dev.copy_(host, non_blocking=pinned), sync) / 1e9
        out[f"d2h_{label}_gbs"] = n * 4 / _best_seconds(lambda: host.copy_(dev, non_blocking=pinned), sync) / 1e9
    return out


def measure(device: torch.device | str = "cpu", progress: Callable[[str, float], None] | None = None) -> Peaks:
    """Measure the peaks of `device` now, under the measurement lock (a few seconds on a CPU)."""
    device = devices.resolve_device(str(device))
    say = progress or (lambda stage, f: None)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else devices.cpu_name()
    peaks = Peaks(device=str(device), name=name, source="measured", threads=torch.get_num_threads(),
                  torch=torch.__version__, measured_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    with measurement_lock(lambda s: say(f"waiting for another measurement ({s:.0f} s)", 0.0)), torch.inference_mode():
        meter = LoadMeter()
        say("GEMM " + ", ".join(_TURNS) + " (taking turns)", 0.0)
        rates = gemm_rates(_TURNS, device, sync, peaks)
        say("GEMM fp16", 3 / 6)
        rates.update(gemm_rates(("fp16",), device, sync, peaks))
        for kind, rate in rates.items():
            setattr(peaks, {"int8": "int8_gops"}.get(kind, f"{kind}_gflops"), rate)
        say("memory bandwidth", 4 / 6)
        peaks.mem_bw_gbs, peaks.copy_bw_gbs = _bandwidth(device, sync)
        if device.type == "cuda":
            say("host<->device copies", 5 / 6)
            for k, v in _transfer(device, sync).items():
                setattr(peaks, k, v)
        peaks.load = meter.result()
    if device.type == "cpu":
        for kind in devices.emulated_precisions():
            peaks.notes.append(f"{kind} is emulated on this CPU (no {kind} instructions): measured on a "
                               f"{EMULATED_N}x{EMULATED_N} GEMM, and passes in {kind} are expected to be slower")
    say("done", 1.0)
    return peaks


def get(device: torch.device | str = "cpu", refresh: bool = False,
        progress: Callable[[str, float], None] | None = None) -> Peaks:
    """Cached peaks for this machine, torch version, thread count and device; measured when missing or refresh."""
    device = devices.resolve_device(str(device))
    key = cache_key(device)
    path = cache_path()
    cache = _read_json(path)
    if not refresh and key in cache:
        return Peaks.from_dict(cache[key])
    peaks = measure(device, progress)
    if peaks.load is not None and peaks.load.busy:  # not this machine's truth: used once, measured again next time
        peaks.notes.append(f"not cached: {peaks.load.text}")
        return peaks
    cache[key] = peaks.to_dict()
    if why := _write_json(path, cache):
        peaks.notes.append(f"not cached ({why})")
    return peaks


def cached(device: torch.device | str = "cpu") -> Peaks | None:
    """This machine's cached peaks for `device`, or None when they were never measured (reads, never measures)."""
    device = devices.resolve_device(str(device))
    data = _read_json(cache_path()).get(cache_key(device))
    return Peaks.from_dict(data) if data else None


# ---------------------------------------------------------------- the model's own GEMMs

MAX_SHAPES = 6  # BERT has 3 distinct Linear shapes, a CNN's classifier 1-2: a few seconds of timing


def _dims(text: str) -> list[list[int]]:
    try:
        return [list(map(int, d)) for d in json.loads(text)]
    except (ValueError, TypeError):
        return []


def _mkn(d: list[list[int]]) -> tuple[int, int, int] | None:
    """(M, K, N) of one recorded call, read from the shapes' form: linear (x[..., K], W[N, K], b), addmm (b, A[M, K],
    B[K, N]) or mm (A[M, K], B[K, N])."""
    if len(d) >= 3 and len(d[1]) == 2 and len(d[2]) == 2 and d[1][1] == d[2][0]:
        return d[1][0], d[1][1], d[2][1]
    if len(d) >= 2 and len(d[0]) >= 1 and len(d[1]) == 2 and d[0][-1] == d[1][1]:
        m = 1
        for x in d[0][:-1]:
            m *= x
        return m, d[0][-1], d[1][0]
    if len(d) >= 2 and len(d[0]) == 2 and len(d[1]) == 2 and d[0][1] == d[1][0]:
        return d[0][0], d[0][1], d[1][1]
    return None


def gemm_shapes(run: ProfileRun) -> list[tuple[int, int, int]]:
    """The distinct (M, K, N) of the run's Linear GEMMs (the aten Linear ops' shapes the untimed pass recorded),
    largest work first."""
    shapes = set()
    for op in run.ops:
        if op.name.startswith("aten::") and oc.matches(op.name, oc.LINEAR):
            shapes |= {s for text in op.input_shapes if (s := _mkn(_dims(text))) is not None}
    return sorted((s for s in shapes if min(s) > 0), key=lambda s: -s[0] * s[1] * s[2])[:MAX_SHAPES]


def _shape_gemm(kind: str, m: int, k: int, n: int) -> Callable[[], None]:
    g = torch.Generator(device="cpu").manual_seed(0)
    x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
    if kind == "int8":  # what the int8 passes run: a dynamically quantized Linear
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, w.abs().amax(1) / 127 + 1e-8, torch.zeros(n, dtype=torch.long), 0,
                                           torch.qint8)
        packed = torch.ops.quantized.linear_prepack(q, None)
        return lambda: torch.ops.quantized.linear_dynamic(x, packed, True)
    x, w = x.to(_DTYPES[kind]), w.to(_DTYPES[kind])
    return lambda: torch.nn.functional.linear(x, w)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged cache is only a cache: measure again


def _write_json(path: Path, data: dict) -> str:
    """Write a cache file atomically; the reason when it could not be written, else ""."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        return str(exc.strerror or exc)
    return ""


def model_gemm_rates(run: ProfileRun, peaks: Peaks, measure_missing: bool = True) -> Peaks | None:
    """This machine's GEMM rates on the run's own Linear shapes: fp32, int8 and (where this CPU has instructions for
    it) bf16, the shapes and kinds taking turns as the peaks do. A copy of `peaks` with those rates, or None for a
    run without Linear shapes or not on this CPU (or not cached, without `measure_missing`). Emulated precisions keep
    the machine's figure (seconds a call). Cached per machine and shapes unless measured while busy."""
    shapes = gemm_shapes(run)
    if not shapes or run.device.kind != "cpu" or run.device.name != devices.cpu_name():
        return None
    path = store.cache_root() / "gemm_rates.json"
    key = f"{cache_key(torch.device('cpu'))}|{shapes}"
    cache = _read_json(path)
    if key in cache:
        return Peaks.from_dict(cache[key])
    if not measure_missing:
        return None
    kinds = [k for k in ("fp32", "int8", "bf16") if k not in devices.emulated_precisions()]
    fns = {(kind, s): _shape_gemm(kind, *s) for kind in kinds for s in shapes}
    with measurement_lock(), torch.inference_mode():
        meter = LoadMeter()
        for fn in fns.values():
            fn()  # warm-up (packing, oneDNN primitive creation)
        best = best_seconds_each(fns, lambda: None, min_time_s=0.1)
        load = meter.result()
    out = Peaks.from_dict(peaks.to_dict())
    out.source, out.load = "model GEMM shapes", load
    work = sum(2 * m * k * n for m, k, n in shapes)
    for kind in kinds:
        rate = work / sum(best[(kind, s)] for s in shapes) / 1e9
        setattr(out, "int8_gops" if kind == "int8" else f"{kind}_gflops", rate)
    out.notes = [f"GEMM rates on this model's Linear shapes (M x K x N): "
                 f"{', '.join('x'.join(map(str, s)) for s in shapes)}"]
    if load is not None and load.busy:
        out.notes.append(f"not cached: {load.text}")
    else:
        cache[key] = out.to_dict()
        _write_json(path, cache)
    return out


def for_run(run: ProfileRun, measure_missing: bool = True) -> Peaks | None:
    """The ceilings a run is placed against: an imported GPU trace's published spec, else this machine's measured
    peaks (cached; measured now when missing and `measure_missing`, else None)."""
    if run.model.source == "trace" or run.kernels:
        spec = devices.spec_peaks(run.device.name)
        if spec is not None or (run.model.source == "trace" and run.device.kind != "cpu"):
            return spec  # another machine's GPU: never this machine's peaks (None: give a peaks file)
    device = "cpu" if run.device.kind == "cpu" else run.config.device
    return get(device) if measure_missing else cached(device)
