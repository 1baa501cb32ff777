"""Automatic search over pass pipelines: beam search within a time budget, measuring every candidate the same way
and pruning those that fail the accuracy tolerance. Returns the best pipeline and a leaderboard of all tried."""
from __future__ import annotations

import contextlib
import copy
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

import profiler
from profiler import devices, stats, store
from profiler.analysis import frames as analysis
from profiler.measure.session import CancelToken
from profiler.models.loaded import LoadedModel
from profiler.schema import (
    Candidate,
    HeadToHead,
    MachineLoad,
    OpLensError,
    ProfileCancelled,
    ProfileConfig,
    ProfileRun,
    SearchResult,
    error_line,
)

from .base import REGISTRY, Tolerance, apply_pipeline, conflicts
from .calibration import InputSets, held_out_accuracy, input_sets, outputs_on
from .validate import MIN_COSINE, MIN_TOP1


RECOMMEND_MEASURE_BUDGET_S = 120.0


def quick_config(config: ProfileConfig) -> ProfileConfig:
    """Candidates are timed alike, a little lighter than a full profile: no graph, one profiled iteration."""
    c = copy.copy(config)
    c.graph, c.profile_iters, c.warmup = False, 1, max(1, min(config.warmup, 2))
    c.repeats, c.min_time_s = max(5, min(config.repeats, 10)), min(config.min_time_s, 1.0)
    return c


class _Either:
    """A cancel token set when either of two is."""

    def __init__(self, a: CancelToken | None, b: threading.Event):
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.b.is_set() or (self.a is not None and self.a.is_set())


@contextlib.contextmanager
def _until(seconds: float, cancel: CancelToken | None):
    """A cancel token that is also set once `seconds` have passed: measuring stops there instead of overrunning
    the budget. Telling the two apart afterwards is `cancel.is_set()`."""
    out_of_time = threading.Event()
    timer = threading.Timer(seconds, out_of_time.set)
    timer.start()
    try:
        yield _Either(cancel, out_of_time)
    finally:
        timer.cancel()


def first_round_order(name: str) -> tuple[bool, bool, bool]:
    """Where a pass goes in the first round, which a budget may cut short: passes that keep the model's function
    (precision, quantization, layout, fusion) first, cheap ones before compiling or runtime ones; passes that pay off
    only once another follows them (static int8 before a compiler: 0.73x alone on BERT-base) after those; passes that
    change the function (pruning, low rank: without fine-tuning they rarely keep a pretrained model within the
    tolerance) last. BERT-base on 2 cores spent 420 s on prunes and low rank before reaching onnxruntime-int8
    (1.74x)."""
    p = REGISTRY[name]
    return p.family == "structure", bool(p.pays_off_with), p.terminal


def recommended_passes(base: ProfileRun, runs_dir: str | None = None, measure: bool = True) -> list[str]:
    """The passes the Why slow engine recommends for the unoptimized run, best estimate first: the search tries
    them before the rest, so a budget cut short still reaches the likeliest winners (BERT-base on 2 cores spent
    184 s of 420 in one calibration before reaching onnxruntime-int8). Peaks and the model's GEMM rates are measured
    when missing and `measure` (seconds; cached per machine). Empty when no rule fires or nothing is measured."""
    from .recommend import why_slow  # recommend imports optimize, which the search does not need otherwise
    try:
        diagnosis = why_slow(base, runs_dir, measure_peaks=measure)
    except OpLensError:
        return []
    best: dict[str, float] = {}
    for rec in diagnosis.recommendations if diagnosis else []:
        for n in rec.passes:
            best[n] = max(best.get(n, 0.0), rec.estimated_speedup)
    # equal estimates: a pass that tunes itself layer by layer (accuracy-int8) after one that does not, so one slow
    # apply cannot hold up an equally promising quick one
    return sorted(best, key=lambda n: (-round(best[n], 2), n in REGISTRY and REGISTRY[n].per_layer))


def pool_order(pool: list[str], recommended: list[str]) -> list[str]:
    """The first round's order: recommended passes first (in the recommendation's order), then the rest by
    first_round_order."""
    first = [n for n in recommended if n in pool]
    return first + sorted((n for n in pool if n not in first), key=first_round_order)


def emulated_here(names: list[str], device: torch.device) -> list[str]:
    """The passes among `names` whose precision this CPU has no instructions for."""
    return [n for n in names if REGISTRY[n].emulated(device)]


def grow(pipeline: list[str], name: str) -> list[str]:
    """`pipeline` with `name` inserted where its kind of pass belongs (Pass.position), so that a pass which must come
    early (bf16 attention before static int8) can still join a pipeline the beam kept."""
    return sorted(pipeline + [name], key=lambda n: REGISTRY[n].position)


def head_to_head_line(h: dict) -> str:
    """One sentence for people: the pipeline against the best single pass, timed in alternation."""
    return (f"{' + '.join(h['passes'])} is {h['speedup']:.2f}x the speed of the best single pass, "
            f"{' + '.join(h['single'])} (rounds {h['speedup_low']:.2f}-{h['speedup_high']:.2f}x), "
            f"the two timed in alternation ({h['rounds']} ABBA rounds).")


HEAD_TO_HEAD_ROUNDS = 3
FINALISTS = 3  # fastest candidates whose models are kept for the closing re-timing


def head_to_head(a: LoadedModel, b: LoadedModel, config: ProfileConfig, rounds: int = HEAD_TO_HEAD_ROUNDS,
                 cancel: CancelToken | None = None) -> tuple[float, float, float]:
    """Speed of b relative to a, profiled in ABBA order `rounds` times: (median, lowest and highest of the per-round
    ratios of medians). Candidates in a search are timed minutes apart, and this machine's speed drifts by 20-30%
    over minutes; within an ABBA round a steady drift hits both alike."""
    ratios = []
    for _ in range(rounds):
        got: dict[str, list[float]] = {"a": [], "b": []}
        for key in "abba":
            got[key] += profiler.profile(a if key == "a" else b, config, cancel=cancel).latency.samples_ms
        ratios.append(statistics.median(got["a"]) / statistics.median(got["b"]))
    return statistics.median(ratios), min(ratios), max(ratios)


@dataclass
class Bench:
    """What every candidate is measured against, the same way: the model, its held-out reference outputs, the
    unoptimized run, the profile config, and the time budget."""

    loaded: LoadedModel
    device: torch.device
    config: ProfileConfig
    sets: InputSets
    reference: torch.Tensor | None
    base: ProfileRun
    tolerance: Tolerance
    budget_s: float
    start: float = field(default_factory=time.monotonic)
    cancel: CancelToken | None = None

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


@dataclass
class Measured:
    """One candidate as evaluated: its leaderboard row, and for a measured one the model and its run."""

    candidate: Candidate
    model: LoadedModel | None = None
    run: ProfileRun | None = None


@dataclass
class Tried:
    """Every candidate tried, the runs of the measured ones (to save the winner's), and the fastest model of each
    pipeline length (for the closing head-to-head)."""

    candidates: dict[tuple[str, ...], Candidate] = field(default_factory=dict)
    runs: dict[tuple[str, ...], ProfileRun] = field(default_factory=dict)
    fastest: dict[int, Measured] = field(default_factory=dict)
    models: dict[tuple[str, ...], LoadedModel] = field(default_factory=dict)  # the FINALISTS fastest, for re-timing

    def add(self, m: Measured) -> None:
        key = tuple(m.candidate.passes)
        self.candidates[key] = m.candidate
        if m.run is None:
            return
        self.runs[key] = m.run
        self.models[key] = m.model
        keep = sorted(self.models, key=lambda k: self.candidates[k].median_ms)[:FINALISTS]
        self.models = {k: self.models[k] for k in keep}  # a model copy each: keep only the ones that can still win
        best = self.fastest.get(len(key))
        if best is None or m.candidate.median_ms < best.candidate.median_ms:
            self.fastest[len(key)] = m


def evaluate(names: list[str], bench: Bench) -> Measured:
    """Apply, check accuracy, time; any failure of this candidate is recorded, never fatal to the search."""
    cand = Candidate(passes=names)
    try:
        model, results = apply_pipeline(bench.loaded, names, bench.device, stop_at_refusal=True,
                                        tolerance=bench.tolerance)
        cand.apply_s = sum(r.apply_s for r in results)
        skipped = [r for r in results if not r.applied]
        if skipped:
            cand.status, cand.reason = "not-applied", "; ".join(f"{r.name}: {r.reason}" for r in skipped)[:300]
            return Measured(cand)
        cand.accuracy = held_out_accuracy(bench.reference, model, bench.sets, bench.loaded.info.task,
                                          bench.tolerance.min_cosine, bench.tolerance.min_top1, bench.device)
        if not cand.accuracy.passed:
            cand.status, cand.reason = "inaccurate", cand.accuracy.note
            return Measured(cand)
        with _until(max(1.0, bench.left()), bench.cancel) as token:  # a slow candidate cannot overrun the budget
            run = profiler.profile(model, bench.config, cancel=token)
        cand.median_ms = run.latency.median_ms
        cand.speedup, cand.speedup_low, cand.speedup_high = analysis.speedup(bench.base.latency, run.latency)
        return Measured(cand, model, run)
    except ProfileCancelled:
        if bench.cancelled():
            raise
        cand.status, cand.reason = "timeout", "the time budget ran out while measuring it"
    except Exception as exc:  # noqa: BLE001 - a pipeline that breaks this model is a result, not a crash
        cand.status, cand.reason = "failed", error_line(exc)
    return Measured(cand)


# each frontier entry: a pipeline to extend, and the passes it may be extended with (None: any in the pool)
Frontier = list[tuple[list[str], tuple[str, ...] | None]]


def pipelines_to_try(frontier: Frontier, pool: list[str], chosen: list[str],
                     tried: dict[tuple[str, ...], Candidate]) -> list[list[str]]:
    """Each frontier pipeline grown by one pass, without repeats, pipelines already tried, or conflicts."""
    # a partner need not apply to the model as it was (it may apply only after its pass), so it comes from the
    # chosen passes rather than the pool
    grown = [grow(f, n) for f, only in frontier
             for n in (pool if only is None else [m for m in only if m in chosen]) if n not in f]
    return [list(q) for q in dict.fromkeys(map(tuple, grown)) if q not in tried and not conflicts(list(q))]


def keep_in_pool(pool: list[str], tried: dict[tuple[str, ...], Candidate]) -> list[str]:
    """The pool without passes that did not apply, or broke the tolerance, on their own: adding passes does not make
    them apply or win back accuracy, and each such candidate costs a compile."""
    return [n for n in pool if tried.get((n,)) is None or tried[(n,)].status not in ("not-applied", "inaccurate")]


def next_frontier(tried: dict[tuple[str, ...], Candidate], rounds: int, beam: int) -> Frontier:
    """The pipelines of this round worth growing: the `beam` fastest that beat every shorter pipeline by 2%, and,
    first, any whose last pass pays off only with a partner after it (static int8, lowered by torch-compile), however
    slow it is alone: the beam would otherwise never reach its real speed."""
    good = sorted((c for c in tried.values() if c.status == "ok" and len(c.passes) == rounds),
                  key=lambda c: c.speedup, reverse=True)
    best_before = max((c.speedup for c in tried.values() if c.status == "ok" and len(c.passes) < rounds),
                      default=1.0)
    frontier: Frontier = [(c.passes, None) for c in good[:beam] if c.speedup > best_before * 1.02]
    partnered: Frontier = [(c.passes, REGISTRY[c.passes[-1]].pays_off_with) for c in good
                           if REGISTRY[c.passes[-1]].pays_off_with and (c.passes, None) not in frontier]
    return partnered + frontier


def stop_reason(tried: dict[tuple[str, ...], Candidate], rounds: int) -> str:
    """Why the search stops after round `rounds` when nothing of it is worth growing."""
    if rounds > 1:
        return f"no pipeline of {rounds} passes beat the best of {rounds - 1} by 2%"
    if any(c.status == "ok" and len(c.passes) == 1 for c in tried.values()):
        return "no single pass beat the unoptimized model by 2%"
    return "no single pass stayed within the accuracy tolerance"


def leaderboard(tried: dict[tuple[str, ...], Candidate]) -> list[Candidate]:
    """Measured candidates fastest first, then every other one."""
    return sorted(tried.values(), key=lambda c: (c.status != "ok", -c.speedup))


def best_of(board: list[Candidate], base_median_ms: float) -> Candidate:
    """The fastest candidate that beats the unoptimized model, or keeping the model as it is."""
    best = next((c for c in board if c.status == "ok" and c.speedup > 1.0), None)
    if best is None:
        best = Candidate(passes=[], median_ms=base_median_ms, speedup=1.0, speedup_low=1.0, speedup_high=1.0,
                         reason="no pipeline beat the unoptimized model")
    return best


def versus_best_single(best: Candidate, fastest: dict[int, Measured], bench: Bench,
                       say: Callable[[str, float], None]) -> HeadToHead | None:
    """A winner of several passes timed against the best single pass in alternation (ABBA), while budget is left;
    None when the winner is a single pass or nothing, or the budget ran out."""
    single, winner = fastest.get(1), fastest.get(len(best.passes))
    if not (len(best.passes) > 1 and single and winner and winner.candidate is best and bench.left() > 0):
        return None
    say(f"timing {'+'.join(best.passes)} against {'+'.join(single.candidate.passes)} in alternation", 0.99)
    try:
        with _until(bench.left(), bench.cancel) as token:
            ratio, low, high = head_to_head(single.model, winner.model, bench.config, cancel=token)
    except ProfileCancelled:
        if bench.cancelled():
            raise
        return None
    return HeadToHead(passes=best.passes, single=single.candidate.passes, speedup=ratio, speedup_low=low,
                      speedup_high=high, rounds=HEAD_TO_HEAD_ROUNDS)


FINAL_SHARE = 0.2  # of the budget, kept for re-timing the finalists head-to-head


def run_round(queue: list[list[str]], rounds: int, bench: Bench, tried: Tried,
              say: Callable[[str, float], None]) -> str:
    """Evaluate the round's pipelines in order until the budget (less the finalists' share) runs out: the stop reason
    then, else ""."""
    for names in queue:
        if bench.left() <= FINAL_SHARE * bench.budget_s:
            return f"time budget of {bench.budget_s:.0f} s reached"
        if bench.cancelled():
            raise ProfileCancelled("search cancelled")
        say(f"round {rounds}: trying {' + '.join(names)}", min(0.99, 1 - bench.left() / bench.budget_s))
        tried.add(evaluate(names, bench))
    return ""


def finalists(best: Candidate, board: list[Candidate], tried: Tried, bench: Bench,
              say: Callable[[str, float], None], timed: HeadToHead | None = None) -> HeadToHead | None:
    """The best and the runner-up re-timed in alternation (ABBA), with the budget's reserve (and a little over: a
    verdict without it is worth less than a few seconds); None without a runner-up or when cancelled by time."""
    ok = [c for c in board if c.status == "ok" and c is not best]
    if not best.passes or not ok:
        return None
    runner = ok[0]
    if timed is not None and timed.passes == best.passes and timed.single == runner.passes:
        return timed  # the best single pass is the runner-up: already timed against the winner
    a, b = tried.models.get(tuple(runner.passes)), tried.models.get(tuple(best.passes))
    if a is None or b is None:
        return None
    say(f"timing the finalists {'+'.join(best.passes)} and {'+'.join(runner.passes)} in alternation", 0.99)
    try:
        with _until(max(bench.left(), 0.1 * bench.budget_s), bench.cancel) as token:
            ratio, low, high = head_to_head(a, b, bench.config, cancel=token)
    except ProfileCancelled:
        if bench.cancelled():
            raise
        return None
    return HeadToHead(passes=best.passes, single=runner.passes, speedup=ratio, speedup_low=low, speedup_high=high,
                      rounds=HEAD_TO_HEAD_ROUNDS)


def verdict(best: Candidate, board: list[Candidate], final: HeadToHead | None,
            load: MachineLoad | None) -> tuple[str, str]:
    """("confirmed" | "inconclusive", one line): a winner is named only when its gain over the unoptimized model and
    its lead over the runner-up (head-to-head when timed, else the two ranges) both clear the noise."""
    busy = f" {load.text}." if load is not None and load.busy else ""
    name = " + ".join(best.passes)
    if not best.passes:
        return "confirmed", f"no pipeline beat the unoptimized model.{busy}"
    if best.speedup_low <= 1.0:
        return "inconclusive", (f"inconclusive: {name}'s range {best.speedup_low:.2f}-{best.speedup_high:.2f}x spans "
                                f"1.0, so no gain is shown; search again with more repeats or on a quieter "
                                f"machine.{busy}")
    if final is not None:
        other = " + ".join(final.single)
        if final.speedup_low <= 1.0:
            return "inconclusive", (f"inconclusive between {name} and {other}: timed in alternation, {name} ran "
                                    f"{final.speedup_low:.2f}-{final.speedup_high:.2f}x the runner-up's speed "
                                    f"({final.rounds} ABBA rounds); either is a {best.speedup_low:.2f}x+ gain, "
                                    f"re-time them on a quieter machine to pick one.{busy}")
        return "confirmed", (f"{name} wins: {final.speedup:.2f}x the runner-up {other} timed in alternation "
                             f"({final.speedup_low:.2f}-{final.speedup_high:.2f}x).{busy}")
    runner = next((c for c in board if c.status == "ok" and c is not best), None)
    if runner is not None and runner.speedup_high >= best.speedup_low:
        return "inconclusive", (f"inconclusive between {name} ({best.speedup_low:.2f}-{best.speedup_high:.2f}x) and "
                                f"{' + '.join(runner.passes)} ({runner.speedup_low:.2f}-{runner.speedup_high:.2f}x): "
                                f"their ranges overlap and there was no budget left to re-time them.{busy}")
    return "confirmed", f"{name} wins ({best.speedup_low:.2f}-{best.speedup_high:.2f}x).{busy}"


def save_search_runs(result: SearchResult, base: ProfileRun, runs: dict[tuple[str, ...], ProfileRun],
                     runs_dir: str | None) -> None:
    """Save the unoptimized run and the winner's run in the store, and name both in `result`."""
    store.save(base, runs_dir)
    result.base_run_id = base.id
    winner_run = runs.get(tuple(result.best.passes))
    if winner_run is not None:
        winner_run.model.name = f"{winner_run.model.name}+{'+'.join(result.best.passes)}"
        winner_run.notes.append(f"best of a search from run {base.id}: {', '.join(result.best.passes)}")
        store.save(winner_run, runs_dir)
        result.best_run_id = winner_run.id


@store.temporary_traces()  # runs profiled here and not saved leave no trace folder
def search(loaded: LoadedModel, config: ProfileConfig | None = None, budget_s: float = 300, beam: int = 2,
           min_cosine: float = MIN_COSINE, min_top1: float = MIN_TOP1, passes: list[str] | None = None,
           progress: Callable[[str, float], None] | None = None, cancel: CancelToken | None = None,
           save_runs: bool = False, runs_dir: str | None = None, include_emulated: bool = False) -> SearchResult:
    """Beam search over pipelines of `passes` (default: all but those this CPU emulates, unless `include_emulated`;
    a pass named in `passes` is tried). With `save_runs`, the unoptimized model's run and the best pipeline's run
    are saved in the store (`runs_dir`), so the result can name both."""
    config = quick_config(config or ProfileConfig())
    say = progress or (lambda stage, f: None)
    device = devices.resolve_device(config.device)
    start = time.monotonic()
    sets = input_sets(loaded)  # candidates are judged on held-out inputs, as optimize() judges them
    reference = outputs_on(loaded, sets.held_out, device)
    say("timing the unoptimized model", 0.0)
    base = profiler.profile(loaded, config, cancel=cancel)
    bench = Bench(loaded, device, config, sets, reference, base, Tolerance(min_cosine, min_top1), budget_s, start,
                  cancel)
    chosen = list(passes or REGISTRY)
    tried = Tried()
    if not passes and not include_emulated:  # a pass this CPU emulates is tried only when asked for
        for n in emulated_here(chosen, device):
            tried.candidates[(n,)] = Candidate(passes=[n], status="not-tried", reason=(
                f"{REGISTRY[n].emulated(device)}; tried only when asked for (--include-emulated)"))
        chosen = [n for n in chosen if (n,) not in tried.candidates]
    pool = [n for n in chosen if REGISTRY[n].check(loaded, device) is None]
    say("reading the recommendations for the unoptimized run", 0.0)
    # measuring missing peaks takes seconds: worth it in a real search, not in a short one
    pool = pool_order(pool, recommended_passes(base, runs_dir, measure=budget_s >= RECOMMEND_MEASURE_BUDGET_S))
    frontier: Frontier = [([], None)]
    rounds, stopped = 0, ""
    while frontier and not stopped:
        rounds += 1
        queue = pipelines_to_try(frontier, pool, chosen, tried.candidates)
        if not queue:
            stopped = "every compatible pipeline was tried"
            break
        stopped = run_round(queue, rounds, bench, tried, say)
        if rounds == 1:
            pool = keep_in_pool(pool, tried.candidates)
        frontier = next_frontier(tried.candidates, rounds, beam)
        if not frontier and not stopped:
            stopped = stop_reason(tried.candidates, rounds)
    board = leaderboard(tried.candidates)
    best = best_of(board, base.latency.median_ms)
    vs_single = versus_best_single(best, tried.fastest, bench, say)
    final = finalists(best, board, tried, bench, say, vs_single)
    load = stats.combine_loads(base.load, *(r.load for r in tried.runs.values()))
    decided, line = verdict(best, board, final, load)
    result = SearchResult(base_median_ms=base.latency.median_ms, best=best, leaderboard=board, stopped=stopped,
                          elapsed_s=time.monotonic() - start, vs_best_single=vs_single, finalists=final,
                          verdict=decided, verdict_text=line, load=load)
    if save_runs:
        save_search_runs(result, base, tried.runs, runs_dir)
    say("done", 1.0)
    return result
