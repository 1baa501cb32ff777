"""Greedy generation measured step by step.
LoadedModel in, ProfileRun with `generation` out.

Prefill and decode run as an explicit loop (model(ids, past_key_values=cache) then argmax, one token at a time), so
each step is timed on its own: TTFT is the prefill step, TPOT one decode step, e2e the whole loop. Each phase is then
placed against its roof: prefill against the GEMM peak (it is compute-bound), decode against memory bandwidth (each
step reads every weight and the KV cache to produce one token per sequence).
"""
from __future__ import annotations

import copy
import datetime as _dt
import inspect
import os
import statistics
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch
from torch.profiler import (
    ProfilerActivity,
    record_function,
    schedule,
    tensorboard_trace_handler,
)
from torch.profiler import (
    profile as torch_profile,
)

from profiler import devices, store
from profiler.measure import flops as flops_mod
from profiler.measure import ops as ops_mod
from profiler.measure.lock import measurement_lock
from profiler.measure.memory import memory_tracker
from profiler.measure.session import new_run_id, prepare
from profiler.measure.timing import measure
from profiler.models.decoder import (
    Around,
    cache_bytes,
    cache_tensors,
    check_causal_lm,
    check_length,
    decode_text,
    greedy,
    kv_formula_bytes,
    kv_layout,
    model_tokenizer,
    new_cache,
    prompt_ids,
    step_weight_bytes,
)
from profiler.models.loaded import LoadedModel
from profiler.schema import (
    GenerateConfig,
    Generation,
    Graph,
    ModelRunError,
    OpLensError,
    OpStat,
    Peaks,
    PhaseStat,
    ProfileCancelled,
    ProfileConfig,
    ProfileRun,
    Spread,
    TraceFormatError,
)
from profiler.stats import noise_message, summarize
from profiler.traces.figures import TraceFigures, trace_figures

CACHES = ("dynamic", "static")
PHASES = ("prefill", "decode")


def spread(samples: list[float]) -> Spread:
    s = summarize(samples)
    return Spread(median=s.median_ms, mean=s.mean_ms, p10=s.p10_ms, p90=s.p90_ms, p99=s.p99_ms, iqr=s.iqr_ms,
                  n=len(samples), noise=s.noise)


# ---------------------------------------------------------------- measurement

def generate(
    loaded: LoadedModel,
    config: GenerateConfig | None = None,
    progress: Callable[[str, float], None] | None = None,
    cancel: Any = None,
    peaks: Peaks | None = None,
) -> ProfileRun:
    """Measure greedy generation of `loaded` (a causal LM): TTFT, TPOT, e2e, KV cache, and each phase against its
    roof."""
    config = config or GenerateConfig()
    _validate(config)
    device = devices.resolve_device(config.device)
    dtype = devices.resolve_dtype(config.dtype)
    check_causal_lm(loaded.module, loaded.info.name)
    check_length(loaded.module, loaded.info.name, config.prompt_len + config.new_tokens)
    say = progress or (lambda stage, frac: None)
    check_cancel = _canceller(cancel)

    peaks = peaks or _machine_peaks(device, say)
    try:
        module, _, _ = prepare(loaded, device, dtype)
    except Exception as exc:  # noqa: BLE001 - out of memory moving or casting the model
        raise _failure(exc, loaded, device, config) from None
    vocab = module.config.get_text_config().vocab_size
    tokenizer = model_tokenizer(loaded)
    prompt = prompt_ids(loaded, config.batch_size, config.prompt_len, vocab, tokenizer).to(device)
    keep_last = "logits_to_keep" in inspect.signature(module.forward).parameters
    max_len = config.prompt_len + config.new_tokens
    stopwatch = devices.Stopwatch(device)
    last: dict[str, Any] = {}

    def run(around: Around) -> torch.Tensor:
        cache = new_cache(module, config.cache, max_len)
        tokens = greedy(module, prompt, config.new_tokens, cache, around, keep_last)
        last["cache"] = cache
        return tokens

    records: list[tuple[float, list[float], torch.Tensor]] = []

    def timed(samples: list[float]):
        check_cancel()
        ttft, steps = [], []
        with stopwatch.time(samples):
            tokens = run(lambda phase: stopwatch.time(ttft if phase == "prefill" else steps))
        records.append((ttft[0], steps, tokens))

    notes: list[str] = []
    try:
        with torch.inference_mode():
            say("checking the model generates", 0.02)
            run(lambda phase: nullcontext())  # outside the lock: a model that fails, fails fast
        with measurement_lock(lambda s: (check_cancel(), say(f"waiting for another measurement ({s:.0f} s)", 0.0))), \
                torch.inference_mode():
            with memory_tracker(device) as memory:
                e2e = measure(timed, config.warmup, config.repeats, config.min_time_s, config.max_time_s,
                              tick=lambda f: (check_cancel(), say("timing generations", 0.05 + 0.55 * f)))
            kv_bytes, kv_dtype = cache_bytes(last["cache"]), _cache_dtype(last["cache"], dtype)
            say("recording operators per phase", 0.6)
            check_cancel()
            trace_dir = store.temp_trace_dir()
            detail, phase_wall = _record(run, stopwatch, device, trace_dir)
            say("counting FLOPs per phase", 0.85)
            flops = _count_flops(run)
    except OpLensError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model's own failure, reported in words
        raise _failure(exc, loaded, device, config) from None
    say("summarising", 0.95)
    traces = [os.path.join(trace_dir, f) for f in os.listdir(trace_dir) if f.endswith((".json", ".json.gz"))]
    trace = traces[0] if traces else None
    figs = _trace_ops(trace, detail, device.type == "cuda", notes)
    timed_records = records[len(records) - len(e2e.samples_ms):]  # measure() ran the warm-up generations first
    ttft = summarize([r[0] for r in timed_records], [r[0] for r in records[:len(records) - len(timed_records)]])
    gen = _summarise(config, module, ttft, e2e, timed_records, kv_bytes, kv_dtype, peaks, dtype, flops, phase_wall,
                     figs.tagged)
    gen.memory = memory
    gen.prompt_ids = prompt.cpu().tolist()
    gen.text = decode_text(tokenizer, torch.tensor(gen.token_ids)) if gen.token_ids else ""
    notes += gen.notes + _noise_notes(gen, e2e, ttft)
    return _as_run(loaded, config, device, e2e, gen, figs, detail, trace, phase_wall, notes)


def _canceller(cancel: Any) -> Callable[[], None]:
    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise ProfileCancelled("generation cancelled")
    return check_cancel


def _machine_peaks(device: torch.device, say: Callable[[str, float], None]) -> Peaks:
    """This machine's peaks, before the measurement lock: peaks.get takes it itself when it has to measure."""
    from profiler.measure import peaks as peaks_mod

    say("machine peaks", 0.0)
    return peaks_mod.get(device)


def _noise_notes(gen: Generation, e2e, ttft) -> list[str]:
    notes = []
    for what, stats in (("e2e", e2e), ("TTFT", ttft), ("TPOT", summarize([x for s in gen.steps_ms for x in s]))):
        if msg := noise_message(stats):
            notes.append(f"{what}: {msg}")
    if not gen.deterministic:
        notes.append("greedy generations differed between repeats (non-deterministic kernels?): token_ids are the last")
    return notes


def _failure(exc: BaseException, loaded: LoadedModel, device: torch.device, config: GenerateConfig) -> ModelRunError:
    if devices.is_oom(exc):
        return ModelRunError(devices.oom_message(
            exc, f"generating with {loaded.info.name} on {device} at batch size {config.batch_size}, "
                 f"{config.prompt_len} + {config.new_tokens} tokens", "--batch-size, --prompt-len or --new-tokens"))
    text = str(exc).strip().splitlines()
    return ModelRunError(
        f"{loaded.info.name} failed while generating: {type(exc).__name__}: {text[0][:300] if text else ''}"
    )


def _validate(config: GenerateConfig) -> None:
    for name in ("batch_size", "prompt_len", "new_tokens"):
        if getattr(config, name) < 1:
            raise ModelRunError(f"{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    if config.cache not in CACHES:
        raise ModelRunError(f"unknown cache '{config.cache}': use {' or '.join(CACHES)}")


def _cache_dtype(cache: Any, fallback: torch.dtype) -> torch.dtype:
    tensors = cache_tensors(cache)
    return tensors[0].dtype if tensors else fallback


def _record(run: Callable[[Around], torch.Tensor], stopwatch, device: torch.device, trace_dir: str):
    """One generation under torch.profiler with each step tagged oplens.prefill / oplens.decode (after one untagged
    warm-up step), its Kineto trace written to trace_dir; then one more with shapes and FLOPs (they slow ops, so they
    stay out of the timed session) and memory per op. Returns (detail events, profiled wall ms per phase)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    worker = f"{os.uname().nodename}_{os.getpid()}"
    wall: dict[str, list[float]] = {p: [] for p in PHASES}

    @contextmanager
    def tagged(phase: str, times: dict[str, list[float]] | None) -> Iterator[None]:
        with stopwatch.time(times[phase] if times is not None else []), record_function(f"oplens.{phase}"):
            yield

    with torch_profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1, repeat=1),
                       on_trace_ready=tensorboard_trace_handler(trace_dir, worker_name=worker, use_gzip=True),
                       profile_memory=True) as prof:
        for i in range(2):
            run(lambda phase: tagged(phase, wall if i == 1 else None))
            prof.step()
    with torch_profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1, repeat=1),
                       record_shapes=True, with_flops=True, profile_memory=True) as prof:
        for _ in range(2):
            run(lambda phase: tagged(phase, None))
            prof.step()
    return prof.events(), {p: sum(v) for p, v in wall.items()}


def _trace_ops(trace: str | None, detail, on_cuda: bool, notes: list[str]) -> TraceFigures:
    """The profiled generation's operators, as a whole and per phase, from its own trace (the analysis imported
    traces get), with shapes, FLOPs and memory from the untimed pass."""
    try:
        if trace is None:
            raise TraceFormatError("the profiler wrote no trace")
        figs = trace_figures(trace)
    except OpLensError as exc:
        notes.append(f"operators not read from the generation's trace: {exc}")
        return TraceFigures([], [], [], None)
    for phase, ops in [("", figs.ops)] + list(figs.tagged.items()):
        events = _phase_events(detail, phase) if phase else detail
        ops_mod.add_detail(ops, events, on_cuda, flops_mod.count_events(events, is_op=ops_mod.is_op_event), {})
    return figs


def _count_flops(run: Callable[[Around], torch.Tensor]) -> dict[str, float]:
    """FLOPs per phase of one (untimed) generation, counted by FlopCounterMode (matmuls, attention, convolutions)."""
    totals = {p: 0.0 for p in PHASES}

    @contextmanager
    def counting(phase: str) -> Iterator[None]:
        mode = flops_mod.counter()  # entering a mode clears its counts: one per step, summed
        with mode:
            yield
        totals[phase] += mode.get_total_flops()

    run(counting)
    return totals


def _phase_events(events, phase: str) -> list:
    return [e for e in events if ops_mod.nearest_tag(e, "oplens.") == phase]


def _summarise(config: GenerateConfig, module, ttft, e2e, records, kv_bytes: int, kv_dtype: torch.dtype, peaks: Peaks,
               dtype: torch.dtype, flops: dict[str, float], phase_wall: dict[str, float],
               phase_ops: dict[str, list[OpStat]]) -> Generation:
    b, p, n = config.batch_size, config.prompt_len, config.new_tokens
    steps = [r[1] for r in records]
    tpot = spread([x for s in steps for x in s])
    itl = [statistics.median(col) for col in zip(*steps)] if steps and steps[0] else []
    # the last generated token is never fed back, so a dynamic cache ends holding prompt + new - 1 tokens
    kv_tokens = max_len = p + n
    if config.cache == "dynamic":
        kv_tokens = p + n - 1
    layout = kv_layout(module.config, torch.empty((), dtype=kv_dtype).element_size())
    # measured: what the cache really holds per token and sequence (the formula's figure, unless the model's cache
    # differs)
    per_token = kv_bytes / (kv_tokens * b) if kv_bytes else kv_formula_bytes(layout, 1, 1)
    weights = step_weight_bytes(module)
    contexts = [p + i + 1 for i in range(n - 1)]  # tokens attended by decode step i (the cache plus the new token)
    # a static cache's attention reads the whole allocated buffer (masked), a dynamic one only what it holds
    kv_read = [(max_len if config.cache == "static" else c) * per_token * b for c in contexts]
    decode_bytes = [weights + r for r in kv_read]
    bw = peaks.mem_bw_gbs * 1e9
    peak_flops = {torch.bfloat16: peaks.bf16_gflops, torch.float16: peaks.fp16_gflops}.get(
        dtype, 0.0
    ) or peaks.fp32_gflops
    peak_flops *= 1e9

    def floor_ms(fl: float, by: float) -> float:
        return 1e3 * max(fl / peak_flops if peak_flops else 0.0, by / bw if bw else 0.0)

    prefill_bytes = weights + p * per_token * b  # weights read once, the prompt's keys and values written
    measured = {"prefill": ttft.median_ms, "decode": tpot.median * (n - 1)}
    phase_bytes = {"prefill": prefill_bytes, "decode": float(sum(decode_bytes))}
    phases = []
    for name, roof, n_steps, tokens in (("prefill", "compute", 1, b * p), ("decode", "memory", n - 1, b * (n - 1))):
        ops = phase_ops.get(name, [])
        floor = floor_ms(flops[name], phase_bytes[name])
        phases.append(PhaseStat(
            name=name, steps=n_steps, tokens=tokens, ops=ops, wall_ms=phase_wall.get(name, 0.0),
            exec_ms=sum(o.exec_ms for o in ops), trans_ms=sum(o.trans_ms for o in ops), flops=flops[name],
            bytes=phase_bytes[name], roof=roof, floor_ms=floor, measured_ms=measured[name],
            roof_fraction=floor / measured[name] if measured[name] > 0 else 0.0))
    tokens = [r[2] for r in records]
    e2e_med = e2e.median_ms
    notes = [
        f"{p.name} ran at {p.roof_fraction:.2f}x its floor, faster than the measured peaks allow: they were measured "
        "under another load; run `python -m profiler peaks --refresh`"
        for p in phases
        if p.roof_fraction > 1.05
    ]
    return Generation(
        config=copy.copy(config),
        ttft_ms=ttft.median_ms,
        tpot_ms=tpot,
        e2e_ms=e2e_med,
        tokens_per_s=1e3 * b * n / e2e_med if e2e_med else 0.0,
        decode_tokens_per_s=1e3 * b / tpot.median if tpot.median else 0.0,
        prefill_tokens_per_s=1e3 * b * p / ttft.median_ms if ttft.median_ms else 0.0,
        ttft=ttft,
        e2e=e2e,
        steps_ms=steps,
        itl_ms=itl,
        context_lens=contexts,
        kv_cache_bytes=kv_bytes,
        kv_cache_formula_bytes=kv_formula_bytes(layout, kv_tokens, b),
        kv_cache_tokens=kv_tokens,
        kv_bytes_per_token=float(per_token),
        kv_layout=layout,
        weight_bytes_per_step=weights,
        decode_bytes_per_token=statistics.fmean(decode_bytes) if decode_bytes else 0.0,
        decode_floor_ms=floor_ms(0.0, statistics.fmean(decode_bytes)) if decode_bytes else 0.0,
        prefill_floor_ms=phases[0].floor_ms,
        peak_gflops=peak_flops / 1e9,
        mem_bw_gbs=peaks.mem_bw_gbs,
        peaks_source=f"{peaks.source} ({peaks.name})",
        phases=phases,
        token_ids=tokens[-1].cpu().tolist() if tokens else [],
        deterministic=all(torch.equal(t, tokens[0]) for t in tokens),
        notes=notes,
    )


def _as_run(loaded: LoadedModel, config: GenerateConfig, device: torch.device, e2e, gen: Generation,
            figs: TraceFigures, detail, trace: str | None, phase_wall: dict[str, float],
            notes: list[str]) -> ProfileRun:
    """The generation as a profile run: latency is the e2e of whole generations, ops and totals the profiled one."""
    on_cuda = device.type == "cuda"
    wall = sum(phase_wall.values())  # profiled prefill + decode steps (the loop's own bookkeeping is outside them)
    totals = ops_mod.totals(figs.ops, wall, on_cuda)
    pconfig = ProfileConfig(device=str(device), batch_size=config.batch_size, seq_len=config.prompt_len,
                            warmup=config.warmup, repeats=config.repeats, min_time_s=config.min_time_s,
                            max_time_s=config.max_time_s, profile_iters=1, dtype=config.dtype, graph=False,
                            inputs_on_device=True)
    info = copy.copy(loaded.info)
    info.task = info.task or "text-generation"
    return ProfileRun(
        id=new_run_id(f"{loaded.info.name}-generate"),
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        model=info,
        device=devices.device_info(device),
        config=pconfig,
        latency=e2e,
        totals=totals,
        ops=figs.ops,
        transfers=figs.transfers if on_cuda else ops_mod.host_transfers(figs.ops, detail),
        graph=Graph(
            method="none", note="generate: no graph capture; the operators of each phase are in generation.phases"
        ),
        memory=gen.memory,
        trace_path=trace,
        kernels=figs.kernels,
        gpu=figs.gpu,
        notes=notes,
        versions=devices.library_versions(),
        generation=gen,
    )
