"""profiler.generate (this module, as profiler.profile is runner.py): greedy generation measured step by step.
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
import tempfile
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch
from torch.profiler import (
    ProfilerActivity,
    profile as torch_profile,
    record_function,
    schedule,
    tensorboard_trace_handler,
)

from profiler import devices, flops as flops_mod, inputs as synthetic, ops as ops_mod, sources
from profiler.loading import LoadedModel
from profiler.lock import measurement_lock
from profiler.memory import memory_tracker
from profiler.runner import new_run_id, prepare
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
from profiler.timing import measure, noise_message, summarize
from profiler.trace_import import TraceFigures, trace_figures

CACHES = ("dynamic", "static")
PHASES = ("prefill", "decode")
Around = Callable[[str], Any]  # phase name -> context manager wrapped around one step of that phase


# ---------------------------------------------------------------- the model as a decoder

def check_causal_lm(module: torch.nn.Module, name: str) -> None:
    """Raise ModelRunError unless `module` is a Hugging Face model that can generate (a causal LM)."""
    can = getattr(module, "can_generate", None)
    if getattr(module, "config", None) is None or not callable(can) or not can():
        raise ModelRunError(
            f"{name} ({type(module).__name__}) is not a causal language model, so it cannot generate; "
            "use a decoder such as gpt2, llama, qwen2 (or their -tiny variants), an HF directory or hf:<id>"
        )


def kv_layout(config: Any, element_bytes: int) -> dict[str, int]:
    """Layers, heads, KV heads and head size from a transformers config (GPT-2 names map through attribute_map)."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(c.num_attention_heads)
    kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    return {"layers": int(c.num_hidden_layers), "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
            "element_bytes": int(element_bytes)}


def kv_formula_bytes(layout: dict[str, int], tokens: int, batch: int) -> int:
    """2 (keys and values) x layers x kv_heads x head_dim x tokens x batch x element size."""
    return 2 * layout["layers"] * layout["kv_heads"] * layout["head_dim"] * tokens * batch * layout["element_bytes"]


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """The key and value tensors a transformers cache holds (Cache.layers; older key_cache/value_cache lists)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        pairs = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in layers]
    else:
        pairs = list(zip(getattr(cache, "key_cache", []), getattr(cache, "value_cache", [])))
    return [t for pair in pairs for t in pair if isinstance(t, torch.Tensor)]


def cache_bytes(cache: Any) -> int:
    return sum(t.numel() * t.element_size() for t in cache_tensors(cache))


def new_cache(module: torch.nn.Module, kind: str, max_len: int):
    from transformers import DynamicCache, StaticCache

    makers = {"dynamic": lambda: DynamicCache(config=module.config),
              "static": lambda: StaticCache(config=module.config, max_cache_len=max_len)}
    return makers[kind]()


def step_weight_bytes(module: torch.nn.Module) -> int:
    """Parameter bytes one forward step reads: all weights, except input embedding tables (a step reads only the rows
    of its tokens) unless the table is also the output projection (tied), which reads all of it."""
    out = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    tied = out.weight if out is not None and hasattr(out, "weight") else None
    skip = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Embedding) and m.weight is not tied}
    seen: dict[int, torch.Tensor] = {}
    for p in module.parameters():
        if id(p) not in skip:
            seen[id(p)] = p
    return sum(p.numel() * p.element_size() for p in seen.values())


def greedy(module: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, cache: Any, around: Around,
           keep_last_logits: bool = False) -> torch.Tensor:
    """Greedy decoding, one explicit step at a time: [batch, new_tokens] token ids. `around(phase)` wraps each step."""
    extra = {"logits_to_keep": 1} if keep_last_logits else {}  # as generate() does: logits of the last position only
    with around("prefill"):
        out = module(input_ids=prompt, past_key_values=cache, use_cache=True, **extra)
        token = out.logits[:, -1].argmax(-1)
    tokens = [token]
    for _ in range(new_tokens - 1):
        with around("decode"):
            out = module(input_ids=token[:, None], past_key_values=cache, use_cache=True)
            token = out.logits[:, -1].argmax(-1)
        tokens.append(token)
    return torch.stack(tokens, 1)


def prompt_ids(loaded: LoadedModel, batch: int, prompt_len: int, vocab_size: int, tokenizer: Any) -> torch.Tensor:
    """The prompt: the loaded example's input_ids when they are an unpadded [batch, prompt_len] prompt; else prose
    through the model's own `tokenizer` (model_tokenizer) when it has one (a trained model's choices on random ids are
    near-ties, so its greedy agreement would say little); else seeded random ids."""
    ids, mask = loaded.kwargs.get("input_ids"), loaded.kwargs.get("attention_mask")
    if isinstance(ids, torch.Tensor) and tuple(ids.shape) == (batch, prompt_len) and (mask is None or bool(mask.all())):
        return ids
    if tokenizer is not None:
        prose = synthetic.prose_ids(tokenizer, batch, prompt_len)
        if int(prose.max()) < vocab_size:
            return prose
    return synthetic.text_inputs(vocab_size, batch, prompt_len, token_types=False)["input_ids"]


def more_prompts(tokenizer: Any, prompt: torch.Tensor, n: int, vocab_size: int) -> list[torch.Tensor]:
    """`n` further prompts shaped like `prompt`, for accuracy checks beyond the timed one: later starts of the same
    prose for a model with a tokenizer, other seeded random ids otherwise."""
    batch, length = prompt.shape
    if tokenizer is not None:
        rows = synthetic.prose_ids(tokenizer, batch * (n + 1), length)[batch:]
        if int(rows.max()) < vocab_size:
            return [rows[i * batch:(i + 1) * batch].to(prompt.device) for i in range(n)]
    gen = torch.Generator().manual_seed(synthetic.SEED + 1)
    return [torch.randint(5, vocab_size, (batch, length), generator=gen).to(prompt.device) for _ in range(n)]


def decode_text(tokenizer: Any, ids: torch.Tensor) -> str:
    """The first sequence of `ids` as text, for a model with a tokenizer; "" otherwise."""
    try:
        return tokenizer.decode(ids[0].tolist()) if tokenizer is not None else ""
    except Exception:  # noqa: BLE001 - a tokenizer that cannot decode these ids shows no text, not an error
        return ""


def model_tokenizer(loaded: LoadedModel):
    """The loaded model's tokenizer from its source, or None (none, or it cannot be loaded here). Loading one reads
    files: resolve it once per measurement and hand it on."""
    try:
        return sources.tokenizer_for(loaded.info.spec) if loaded.info is not None and loaded.info.spec else None
    except Exception:  # noqa: BLE001 - missing files, offline: the prompt falls back to random ids
        return None


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

    def check_cancel():
        if cancel is not None and cancel.is_set():
            raise ProfileCancelled("generation cancelled")

    if peaks is None:  # before the measurement lock: peaks.get takes it itself when it has to measure
        from profiler import peaks as peaks_mod

        say("machine peaks", 0.0)
        peaks = peaks_mod.get(device)
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
            trace_dir = tempfile.mkdtemp(prefix="oplens-trace-")
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
    notes += gen.notes
    for what, stats in (("e2e", e2e), ("TTFT", ttft), ("TPOT", summarize([x for s in gen.steps_ms for x in s]))):
        if msg := noise_message(stats):
            notes.append(f"{what}: {msg}")
    if not gen.deterministic:
        notes.append("greedy generations differed between repeats (non-deterministic kernels?): token_ids are the last")
    return _as_run(loaded, config, device, e2e, gen, figs, detail, trace, phase_wall, notes)


def _failure(exc: BaseException, loaded: LoadedModel, device: torch.device, config: GenerateConfig) -> ModelRunError:
    if devices.is_oom(exc):
        return ModelRunError(devices.oom_message(
            exc, f"generating with {loaded.info.name} on {device} at batch size {config.batch_size}, "
                 f"{config.prompt_len} + {config.new_tokens} tokens", "--batch-size, --prompt-len or --new-tokens"))
    text = str(exc).strip().splitlines()
    return ModelRunError(
        f"{loaded.info.name} failed while generating: {type(exc).__name__}: {text[0][:300] if text else ''}"
    )


def check_length(module: torch.nn.Module, name: str, tokens: int) -> None:
    """Refuse a prompt plus new tokens longer than the model's position table (an index error deep inside otherwise)."""
    c = module.config.get_text_config()
    limit = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
    if limit and tokens > limit:
        raise ModelRunError(f"{name} handles at most {limit} positions, but prompt-len + new-tokens = {tokens}; "
                            "lower --prompt-len or --new-tokens")


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
