"""Each step of the search on hand-built candidates, without timing anything (test_cli_and_search.py runs whole
searches), and the one pass description the search reads."""
import dataclasses
import importlib
import itertools
import threading

import pytest
import torch

import optimizers
import profiler
from optimizers import base
from optimizers.calibration import input_sets, outputs_on
from profiler.schema import Accuracy, Candidate, ProfileCancelled

s = importlib.import_module("optimizers.search")  # the module: `optimizers.search` is the face's function

CPU = torch.device("cpu")


def ok(passes, speedup, median_ms=10.0):
    accuracy = Accuracy(max_abs_err=0.0, rel_err=0.0, cosine=1.0, top1_agreement=None, passed=True)
    return Candidate(passes=list(passes), status="ok", speedup=speedup, speedup_low=speedup, speedup_high=speedup,
                     median_ms=median_ms, accuracy=accuracy)


def bad(passes, status):
    return Candidate(passes=list(passes), status=status, reason="hand-built")


def table(*cands):
    return {tuple(c.passes): c for c in cands}


def bench(budget_s=100.0, cancel=None, loaded=None, reference=None, sets=None):
    return s.Bench(loaded=loaded, device=CPU, config=profiler.ProfileConfig(), sets=sets, reference=reference,
                   base=None, tolerance=base.Tolerance(), budget_s=budget_s, cancel=cancel)


# ---------------------------------------------------------------- one pass description

def test_every_pass_is_in_the_stage_its_description_gives():
    assert base.description_problems() == []
    passes = list(optimizers.REGISTRY.values())
    for a, b in itertools.permutations(passes, 2):
        grown = s.grow([a.name], b.name)
        expected = [a.name, b.name] if a.position <= b.position else [b.name, a.name]
        assert grown == expected, (a.name, b.name)
    compiling = [p for p in passes if p.terminal]
    assert {p.name for p in compiling} == {"torch-compile", "torchscript-freeze", "cuda-graphs", "onnxruntime",
                                           "onnxruntime-int8", "openvino"}
    assert all(c.position > p.position for c in compiling for p in passes if not p.terminal)
    # a check that says "apply bf16-attention before quantizing" needs the description to put it there
    assert all(optimizers.get("bf16-attention").position < p.position for p in passes if p.family == "quantization")
    assert s.grow(["static-int8"], "torch-compile") == ["static-int8", "torch-compile"]


def test_a_description_that_contradicts_itself_is_caught():
    with pytest.raises(ValueError, match="family 'speed'"):
        base.Pass("x", "speed", "a family no stage knows", ("cpu",), lambda lm, d: None)
    late = base.Pass("late", "runtime", "pays off with a pass that would come before it", ("cpu",),
                     lambda lm, d: None, pays_off_with=("structured-prune", "warp-drive"))
    problems = base.description_problems({**optimizers.REGISTRY, "late": late})
    assert len(problems) == 2
    assert "structured-prune" in problems[0] and "no later than late" in problems[0]
    assert "warp-drive, which is not a registered pass" in problems[1]


# ---------------------------------------------------------------- the steps

def test_tried_keeps_the_fastest_model_of_each_length():
    tried = s.Tried()
    run = object()  # a stand-in: only its presence matters here
    first, slower, tie = ok(["bf16"], 2.0, 5.0), ok(["dynamic-int8"], 1.5, 7.0), ok(["threads"], 2.0, 5.0)
    for c in (slower, first, tie):
        tried.add(s.Measured(c, model="model-" + c.passes[0], run=run))
    tried.add(s.Measured(bad(["sdpa"], "not-applied")))
    assert list(tried.candidates) == [("dynamic-int8",), ("bf16",), ("threads",), ("sdpa",)]
    assert set(tried.runs) == {("dynamic-int8",), ("bf16",), ("threads",)}  # only measured ones have a run
    assert tried.fastest[1].candidate is first and tried.fastest[1].model == "model-bf16"  # the first of a tie


def test_pipelines_to_try_grow_each_frontier_pipeline_by_one_pass():
    pool = ["bf16", "dynamic-int8", "weight-only-int8", "structured-prune"]
    assert s.pipelines_to_try([([], None)], pool, pool, {}) == [[n] for n in pool]
    grown = s.pipelines_to_try([(["dynamic-int8"], None)], pool, pool, table(ok(["bf16", "dynamic-int8"], 1.1)))
    # weight-only-int8 is a second quantization; bf16 + dynamic-int8 was tried; prune goes before quantizing
    assert grown == [["structured-prune", "dynamic-int8"]]
    partner = [(["static-int8"], ("torch-compile",))]
    assert s.pipelines_to_try(partner, pool, pool, {}) == []  # the partner was not chosen
    assert s.pipelines_to_try(partner, pool, pool + ["torch-compile"], {}) == [["static-int8", "torch-compile"]]


def test_keep_in_pool_drops_passes_that_failed_alone():
    tried = table(ok(["bf16"], 1.2), bad(["sdpa"], "not-applied"), bad(["magnitude-prune"], "inaccurate"),
                  bad(["torch-compile"], "timeout"))
    pool = ["bf16", "sdpa", "magnitude-prune", "torch-compile", "threads"]
    assert s.keep_in_pool(pool, tried) == ["bf16", "torch-compile", "threads"]


def test_next_frontier_keeps_the_beam_that_beat_shorter_pipelines_and_partnered_passes_first():
    tried = table(ok(["bf16"], 1.5), ok(["dynamic-int8"], 1.3), ok(["threads"], 1.6), ok(["static-int8"], 0.7),
                  bad(["sdpa"], "failed"))
    frontier = s.next_frontier(tried, 1, beam=2)
    assert frontier == [(["static-int8"], ("torch-compile",)), (["threads"], None), (["bf16"], None)]
    tried.update(table(ok(["bf16", "threads"], 1.62), ok(["dynamic-int8", "threads"], 1.7)))
    # round 2: only a pipeline more than 2% faster than the best single (1.6x) is grown
    assert s.next_frontier(tried, 2, beam=2) == [(["dynamic-int8", "threads"], None)]
    assert s.next_frontier(table(ok(["bf16"], 1.01)), 1, beam=2) == []  # not 2% better than the model as it is


def test_stop_reason_says_why_nothing_is_worth_growing():
    assert s.stop_reason(table(ok(["bf16"], 1.0)), 1) == "no single pass beat the unoptimized model by 2%"
    assert s.stop_reason(table(bad(["bf16"], "inaccurate")), 1) == \
        "no single pass stayed within the accuracy tolerance"
    assert s.stop_reason(table(ok(["bf16"], 1.5), ok(["bf16", "threads"], 1.5)), 2) == \
        "no pipeline of 2 passes beat the best of 1 by 2%"


def test_leaderboard_and_best():
    tried = table(bad(["sdpa"], "failed"), ok(["bf16"], 1.2), ok(["threads"], 1.6), ok(["lowrank-svd"], 0.8))
    board = s.leaderboard(tried)
    assert [c.passes[0] for c in board] == ["threads", "bf16", "lowrank-svd", "sdpa"]
    assert s.best_of(board, 10.0).passes == ["threads"]
    keep = s.best_of(s.leaderboard(table(ok(["lowrank-svd"], 0.8))), 10.0)
    assert keep.passes == [] and keep.median_ms == 10.0 and keep.speedup == 1.0


def test_versus_best_single_times_a_longer_winner_against_the_best_single(monkeypatch):
    calls = []
    monkeypatch.setattr(s, "head_to_head", lambda a, b, config, cancel=None: calls.append((a, b)) or (1.8, 1.6, 2.0))
    single, pair = ok(["threads"], 1.6), ok(["dynamic-int8", "threads"], 2.9)
    fastest = {1: s.Measured(single, model="single"), 2: s.Measured(pair, model="pair")}
    h = s.versus_best_single(pair, fastest, bench(), lambda *a: None)
    assert calls == [("single", "pair")]
    assert (h.passes, h.single, h.speedup, h.speedup_low, h.speedup_high) == (pair.passes, ["threads"], 1.8, 1.6,
                                                                              2.0)
    assert s.versus_best_single(single, fastest, bench(), lambda *a: None) is None  # a single pass won
    assert s.versus_best_single(pair, fastest, bench(budget_s=0), lambda *a: None) is None  # no time left
    other = ok(["bf16", "threads"], 2.9)
    assert s.versus_best_single(other, fastest, bench(), lambda *a: None) is None  # not the fastest of its length
    assert len(calls) == 1


def test_versus_best_single_out_of_time_is_none_but_a_cancel_is_raised(monkeypatch):
    def cancelled(*a, **k):
        raise ProfileCancelled("stopped")

    monkeypatch.setattr(s, "head_to_head", cancelled)
    pair = ok(["dynamic-int8", "threads"], 2.9)
    fastest = {1: s.Measured(ok(["threads"], 1.6), model="single"), 2: s.Measured(pair, model="pair")}
    assert s.versus_best_single(pair, fastest, bench(), lambda *a: None) is None
    token = threading.Event()
    token.set()
    with pytest.raises(ProfileCancelled):
        s.versus_best_single(pair, fastest, bench(cancel=token), lambda *a: None)


def test_run_round_stops_at_the_budget_and_on_cancel(monkeypatch):
    seen = []
    monkeypatch.setattr(s, "evaluate", lambda names, b: seen.append(names) or s.Measured(ok(names, 1.1)))
    tried = s.Tried()
    assert s.run_round([["bf16"], ["threads"]], 1, bench(), tried, lambda *a: None) == ""
    assert seen == [["bf16"], ["threads"]] and list(tried.candidates) == [("bf16",), ("threads",)]
    assert s.run_round([["sdpa"]], 1, bench(budget_s=0), tried, lambda *a: None) == "time budget of 0 s reached"
    assert seen == [["bf16"], ["threads"]]
    token = threading.Event()
    token.set()
    with pytest.raises(ProfileCancelled, match="search cancelled"):
        s.run_round([["sdpa"]], 1, bench(cancel=token), tried, lambda *a: None)


def test_evaluate_records_refusals_and_inaccuracy_without_timing():
    loaded = profiler.load_model("mlp-tiny")
    sets = input_sets(loaded)
    b = bench(loaded=loaded, reference=outputs_on(loaded, sets.held_out, CPU), sets=sets)
    refused = s.evaluate(["sdpa"], b)
    assert refused.candidate.status == "not-applied" and "not a Hugging Face" in refused.candidate.reason
    assert refused.run is None and refused.model is None
    pruned = s.evaluate(["magnitude-prune"], b)
    assert pruned.candidate.status == "inaccurate" and pruned.candidate.accuracy.cosine < b.tolerance.min_cosine
    assert pruned.run is None


def test_bench_counts_down_its_budget():
    b = dataclasses.replace(bench(budget_s=5.0), start=0.0)
    assert b.left() < 0  # started long ago (monotonic clock zero)
    assert 4.0 < bench(budget_s=5.0).left() <= 5.0


def test_the_first_round_tries_function_changing_passes_last():
    """A budget cut short in round 1 must not have been spent on prunes while onnxruntime-int8 waited."""
    from optimizers.base import REGISTRY
    from optimizers.search import first_round_order
    order = sorted(REGISTRY, key=first_round_order)
    structure = [i for i, n in enumerate(order) if REGISTRY[n].family == "structure"]
    keeps = [i for i, n in enumerate(order) if REGISTRY[n].family != "structure"]
    assert max(keeps) < min(structure) and order.index("onnxruntime-int8") < order.index("magnitude-prune")
    cheap = [i for i in keeps if not REGISTRY[order[i]].terminal and not REGISTRY[order[i]].pays_off_with]
    assert max(cheap) < min(i for i in keeps if REGISTRY[order[i]].terminal)
    assert order.index("openvino") < order.index("static-int8")  # 0.73x alone: it pays off only before a compiler


def test_the_first_round_starts_with_the_recommended_passes():
    from optimizers.search import first_round_order, pool_order
    pool = sorted(["magnitude-prune", "torch-compile", "dynamic-int8", "onnxruntime-int8"], key=first_round_order)
    assert pool_order(pool, ["onnxruntime-int8", "accuracy-int8"]) == [
        "onnxruntime-int8", "dynamic-int8", "torch-compile", "magnitude-prune"]  # accuracy-int8: not in the pool
    assert pool_order(pool, []) == pool


def test_recommended_passes_read_the_why_slow_engine_for_the_unoptimized_run(tiny_bert_run, cached_peaks):
    """With cached peaks the engine's recommendations for bert-tiny (overhead-bound: compile) lead the search, in
    its order; without cached peaks and without leave to measure, nothing is recommended and the default order
    holds."""
    from optimizers.recommend import why_slow
    from optimizers.search import recommended_passes
    from profiler.measure import peaks as peaks_mod
    run, root = tiny_bert_run
    names = recommended_passes(run, root, measure=False)
    recs = why_slow(run, root, measure_peaks=False).recommendations
    assert names and set(names) == {n for r in recs for n in r.passes} and "torch-compile" in names
    estimate = {n: max(r.estimated_speedup for r in recs if n in r.passes) for n in names}
    assert [round(estimate[n], 2) for n in names] == sorted((round(e, 2) for e in estimate.values()), reverse=True)
    peaks_mod.cache_path().unlink()  # the fixture's cache (OPLENS_CACHE_DIR is the test's own)
    assert recommended_passes(run, root, measure=False) == []


def test_equally_promising_passes_are_tried_cheapest_first(monkeypatch):
    """accuracy-int8 (tunes itself per layer: 184 s on BERT-base) after onnxruntime-int8 at the same estimate."""
    from types import SimpleNamespace

    from optimizers.search import recommended_passes
    from profiler.schema import Recommendation
    recs = [Recommendation(rule="int8", title="", evidence="", passes=["accuracy-int8"], estimated_speedup=1.8),
            Recommendation(rule="int8", title="", evidence="", passes=["onnxruntime-int8"], estimated_speedup=1.8),
            Recommendation(rule="overhead", title="", evidence="", passes=["torch-compile"], estimated_speedup=1.2)]
    monkeypatch.setattr(importlib.import_module("optimizers.recommend"), "why_slow",
                        lambda *a, **k: SimpleNamespace(recommendations=recs))
    assert recommended_passes(None) == ["onnxruntime-int8", "accuracy-int8", "torch-compile"]
