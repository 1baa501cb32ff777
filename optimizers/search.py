"""Automatic search over pass pipelines: beam search within a time budget, measuring every candidate the same way
and pruning those that fail the accuracy tolerance. Returns the best pipeline and a leaderboard of all tried."""
from __future__ import annotations

import contextlib
import copy
import statistics
import threading
import time
from typing import Callable

import profiler
from profiler import analysis, devices, store
from profiler.loading import LoadedModel
from profiler.runner import CancelToken
from profiler.schema import Candidate, HeadToHead, ProfileCancelled, ProfileConfig, SearchResult, error_line

from .base import REGISTRY, apply_pipeline, conflicts
from .calibration import held_out_accuracy, input_sets, outputs_on
from .validate import MIN_COSINE, MIN_TOP1


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


# where each kind of pass goes in a pipeline the search grows: reshape the model, swap its attention, lower its
# precision, quantize, lay out memory, set the runtime; a compiling pass comes last
_STAGE = {"structure": 0, "compilation & fusion": 1, "precision": 2, "quantization": 3, "memory & layout": 4,
          "runtime": 5}


def grow(pipeline: list[str], name: str) -> list[str]:
    """`pipeline` with `name` inserted where its kind of pass belongs, so that a pass which must come early (bf16
    attention before static int8) can still join a pipeline the beam kept."""
    return sorted(pipeline + [name], key=lambda n: (REGISTRY[n].terminal, _STAGE.get(REGISTRY[n].family, 5)))


def head_to_head_line(h: dict) -> str:
    """One sentence for people: the pipeline against the best single pass, timed in alternation."""
    return (f"{' + '.join(h['passes'])} is {h['speedup']:.2f}x the speed of the best single pass, "
            f"{' + '.join(h['single'])} (rounds {h['speedup_low']:.2f}-{h['speedup_high']:.2f}x), "
            f"the two timed in alternation ({h['rounds']} ABBA rounds).")


HEAD_TO_HEAD_ROUNDS = 3


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


def search(loaded: LoadedModel, config: ProfileConfig | None = None, budget_s: float = 300, beam: int = 2,
           min_cosine: float = MIN_COSINE, min_top1: float = MIN_TOP1, passes: list[str] | None = None,
           progress: Callable[[str, float], None] | None = None, cancel: CancelToken | None = None,
           save_runs: bool = False, runs_dir: str | None = None) -> SearchResult:
    """Beam search over pipelines of `passes` (default: all). With `save_runs`, the unoptimized model's run and the
    best pipeline's run are saved in the store (`runs_dir`), so the result can name both."""
    config = quick_config(config or ProfileConfig())
    say = progress or (lambda stage, f: None)
    device = devices.resolve_device(config.device)
    start = time.monotonic()
    left = lambda: budget_s - (time.monotonic() - start)
    sets = input_sets(loaded)  # candidates are judged on held-out inputs, as optimize() judges them
    reference = outputs_on(loaded, sets.held_out, device)
    tolerance = {"min_cosine": min_cosine, "min_top1": min_top1}
    say("timing the unoptimized model", 0.0)
    base = profiler.profile(loaded, config, cancel=cancel)
    chosen = list(passes or REGISTRY)
    pool = [n for n in chosen if REGISTRY[n].check(loaded, device) is None]
    pool.sort(key=lambda n: REGISTRY[n].terminal)  # cheap passes first, compiling ones last
    tried: dict[tuple[str, ...], Candidate] = {}
    fastest: dict[int, tuple[Candidate, LoadedModel]] = {}  # by pipeline length, for the closing head-to-head
    runs: dict[tuple[str, ...], profiler.ProfileRun] = {}  # each measured candidate's run, to save the winner's
    stopped = ""

    def evaluate(names: list[str]) -> Candidate:
        """Apply, check accuracy, time; any failure of this candidate is recorded, never fatal to the search."""
        cand = Candidate(passes=names)
        try:
            model, results = apply_pipeline(loaded, names, device, stop_at_refusal=True, tolerance=tolerance)
            cand.apply_s = sum(r.apply_s for r in results)
            skipped = [r for r in results if not r.applied]
            if skipped:
                cand.status, cand.reason = "not-applied", "; ".join(f"{r.name}: {r.reason}" for r in skipped)[:300]
                return cand
            cand.accuracy = held_out_accuracy(reference, model, sets, loaded.info.task, min_cosine, min_top1, device)
            if not cand.accuracy.passed:
                cand.status, cand.reason = "inaccurate", cand.accuracy.note
                return cand
            with _until(max(1.0, left()), cancel) as token:  # a slow candidate cannot overrun the budget
                run = profiler.profile(model, config, cancel=token)
            cand.median_ms = run.latency.median_ms
            runs[tuple(names)] = run
            cand.speedup, cand.speedup_low, cand.speedup_high = analysis.speedup(base.latency, run.latency)
            if len(names) not in fastest or cand.median_ms < fastest[len(names)][0].median_ms:
                fastest[len(names)] = (cand, model)
        except ProfileCancelled:
            if cancel is not None and cancel.is_set():
                raise
            cand.status, cand.reason = "timeout", "the time budget ran out while measuring it"
        except Exception as exc:  # noqa: BLE001 - a pipeline that breaks this model is a result, not a crash
            cand.status, cand.reason = "failed", error_line(exc)
        return cand

    # each frontier entry: a pipeline to extend, and the passes it may be extended with (None: any)
    frontier: list[tuple[list[str], tuple[str, ...] | None]] = [([], None)]
    rounds = 0
    while frontier and not stopped:
        rounds += 1
        # a partner need not apply to the model as it was (it may apply only after its pass), so it comes from
        # the chosen passes rather than the pool
        grown = [grow(f, n) for f, only in frontier
                 for n in (pool if only is None else [m for m in only if m in chosen]) if n not in f]
        queue = [list(q) for q in dict.fromkeys(map(tuple, grown)) if q not in tried and not conflicts(list(q))]
        if not queue:
            stopped = "every compatible pipeline was tried"
            break
        for names in queue:
            if left() <= 0:
                stopped = f"time budget of {budget_s:.0f} s reached"
                break
            if cancel is not None and cancel.is_set():
                raise ProfileCancelled("search cancelled")
            say(f"round {rounds}: trying {' + '.join(names)}", min(0.99, 1 - left() / budget_s))
            tried[tuple(names)] = evaluate(names)
        if rounds == 1:
            # a pass that did not apply, or broke the tolerance, on its own is left out of longer pipelines: adding
            # passes does not make it apply or win back accuracy, and each such candidate costs a compile
            pool = [
                n for n in pool if tried.get((n,)) is None or tried[(n,)].status not in ("not-applied", "inaccurate")
            ]
        good = sorted((c for c in tried.values() if c.status == "ok" and len(c.passes) == rounds),
                      key=lambda c: c.speedup, reverse=True)
        best_before = max(
            (c.speedup for c in tried.values() if c.status == "ok" and len(c.passes) < rounds), default=1.0
        )
        frontier = [(c.passes, None) for c in good[:beam] if c.speedup > best_before * 1.02]
        # a pass that pays off only with a partner after it (static int8, lowered by torch-compile) is tried with
        # that partner first, however slow it is alone: the beam would otherwise never reach its real speed
        partnered = [(c.passes, REGISTRY[c.passes[-1]].pays_off_with) for c in good
                     if REGISTRY[c.passes[-1]].pays_off_with and (c.passes, None) not in frontier]
        frontier = partnered + frontier
        if not frontier and not stopped:
            if rounds > 1:
                stopped = f"no pipeline of {rounds} passes beat the best of {rounds - 1} by 2%"
            elif good:
                stopped = "no single pass beat the unoptimized model by 2%"
            else:
                stopped = "no single pass stayed within the accuracy tolerance"
    board = sorted(tried.values(), key=lambda c: (c.status != "ok", -c.speedup))
    best = next((c for c in board if c.status == "ok" and c.speedup > 1.0), None)
    if best is None:  # keeping the model as it is beats every pipeline tried
        best = Candidate(passes=[], median_ms=base.latency.median_ms, speedup=1.0, speedup_low=1.0, speedup_high=1.0,
                         reason="no pipeline beat the unoptimized model")
    vs_single = None
    single, winner = fastest.get(1), fastest.get(len(best.passes))
    if len(best.passes) > 1 and single and winner and winner[0] is best and left() > 0:
        say(f"timing {'+'.join(best.passes)} against {'+'.join(single[0].passes)} in alternation", 0.99)
        try:
            with _until(left(), cancel) as token:
                ratio, low, high = head_to_head(single[1], winner[1], config, cancel=token)
            vs_single = HeadToHead(passes=best.passes, single=single[0].passes, speedup=ratio, speedup_low=low,
                                   speedup_high=high, rounds=HEAD_TO_HEAD_ROUNDS)
        except ProfileCancelled:
            if cancel is not None and cancel.is_set():
                raise
    result = SearchResult(base_median_ms=base.latency.median_ms, best=best, leaderboard=board, stopped=stopped,
                          elapsed_s=time.monotonic() - start, vs_best_single=vs_single)
    if save_runs:
        store.save(base, runs_dir)
        result.base_run_id = base.id
        winner_run = runs.get(tuple(best.passes))
        if winner_run is not None:
            winner_run.model.name = f"{winner_run.model.name}+{'+'.join(best.passes)}"
            winner_run.notes.append(f"best of a search from run {base.id}: {', '.join(best.passes)}")
            store.save(winner_run, runs_dir)
            result.best_run_id = winner_run.id
    say("done", 1.0)
    return result
