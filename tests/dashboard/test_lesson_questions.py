"""The lessons' questions: the correct option is the one the participant's own numbers give."""
import copy

import pytest

from dashboard import lessons
from profiler.analysis.frames import ops_frame
from profiler.schema import Accuracy, OpDiff, SavedComparison, SweepPoint

PRECISION = {"bf16", "dynamic-int8", "weight-only-int8"}


def test_where_time_goes_names_the_operator_with_the_most_own_time(tiny_bert_run):
    run, _ = tiny_bert_run
    q = lessons.where_time_goes(run)
    top = max(run.ops, key=lambda o: o.exec_ms + o.trans_ms)
    assert q.correct == top.name
    assert len(q.options) == min(4, len(run.ops)) and q.options == sorted(q.options)
    share = (top.exec_ms + top.trans_ms) / (run.totals.exec_ms + run.totals.trans_ms)
    assert lessons.top_op_share(run) == (top.name, pytest.approx(share))
    assert f"{share:.0%}" in q.explanation
    # the share the Operators page shows for that row
    frame = ops_frame(run)
    assert frame.loc[frame["name"] == top.name, "share"].iloc[0] == pytest.approx(share)


@pytest.mark.parametrize("exec_ms, trans_ms, bucket", [(10.0, 0.05, "under 1%"), (10.0, 0.5, "1% to 10%"),
                                                       (10.0, 3.0, "10% to 50%"), (1.0, 3.0, "over 50%")])
def test_compute_vs_movement_buckets_the_transfer_share(tiny_bert_run, exec_ms, trans_ms, bucket):
    run = copy.deepcopy(tiny_bert_run[0])
    run.totals.exec_ms, run.totals.trans_ms = exec_ms, trans_ms
    q = lessons.compute_vs_movement(run)
    assert q.correct == bucket and len(q.options) == 4
    assert f"{trans_ms / (exec_ms + trans_ms):.1%}" in q.explanation


def test_compute_vs_movement_of_a_real_run(tiny_bert_run):
    run = tiny_bert_run[0]
    share = run.totals.trans_ms / (run.totals.exec_ms + run.totals.trans_ms)
    assert lessons.movement_share(run) == pytest.approx(share)
    q = lessons.compute_vs_movement(run)
    chosen = q.correct
    from profiler.analysis.basis import breakdown  # the ms the lesson's bar shows: parts of the median
    parts = breakdown(run)
    assert f"T_trans is {parts['T_trans']:.3g} ms and T_exec {parts['T_exec']:.3g} ms" in q.explanation
    limits = [limit for limit, label in lessons.MOVEMENT_BUCKETS]
    i = [label for _, label in lessons.MOVEMENT_BUCKETS].index(chosen)
    assert share < limits[i] and (i == 0 or share >= limits[i - 1])


def _apply(passes, speedup, passed, model="bert-tiny", cid=None, participant="ann"):
    return SavedComparison(id=cid or "+".join(passes), created="2026-11-26T03:00:00", kind="apply", model=model,
                           spec=model, config=None, passes=passes, speedup=speedup, speedup_low=speedup * 0.9,
                           speedup_high=speedup * 1.1, participant=participant,
                           accuracy=Accuracy(max_abs_err=0.01, rel_err=0.01, cosine=0.9999 if passed else 0.9,
                                             top1_agreement=None, passed=passed))


def test_precision_winner_ignores_a_faster_result_that_failed_accuracy():
    saved = [_apply(["dynamic-int8"], 2.5, passed=False), _apply(["bf16"], 1.4, passed=True),
             _apply(["torch-compile"], 3.0, passed=True), _apply(["bf16"], 9.0, passed=True, model="resnet18")]
    q = lessons.precision_winner(saved, "bert-tiny", PRECISION, ["avx512_bf16", "avx512_vnni"])
    assert q.options == sorted([lessons.AS_IS, "bf16", "dynamic-int8"])  # torch-compile is not a precision
    assert q.correct == "bf16"
    assert "FAILED" in q.explanation and "avx512_bf16" in q.explanation and "avx512_vnni" in q.explanation


def test_precision_winner_is_fp32_when_nothing_beats_it_and_the_newest_result_counts():
    # newest first, as the store lists them: the later bf16 result (0.8x) replaces the older one (1.2x)
    saved = [_apply(["bf16"], 0.8, passed=True, cid="new"), _apply(["bf16"], 1.2, passed=True, cid="old")]
    q = lessons.precision_winner(saved, "bert-tiny", PRECISION, [])
    assert q.correct == lessons.AS_IS
    assert "no native bf16" in q.explanation
    with pytest.raises(ValueError, match="no precision pass"):
        lessons.precision_winner(saved, "minilm", PRECISION)


def test_biggest_saving_is_the_most_negative_change(tiny_bert_run, fast_config):
    import optimizers
    import profiler

    loaded = profiler.load_model("bert-tiny")
    result = optimizers.optimize(loaded, ["torchscript-freeze"], fast_config, base_run=tiny_bert_run[0])
    from optimizers import results

    saved = results.from_apply(result, loaded, fast_config)
    q = lessons.biggest_saving(saved)
    best = min(result.comparison.ops, key=lambda d: d.delta_ms)
    assert best.delta_ms < 0 and q.correct == best.name
    assert f"{-best.delta_ms:.3g} ms" in q.explanation


def test_biggest_saving_refuses_a_result_where_nothing_got_faster():
    from profiler.schema import Comparison, OptimizeResult

    comp = Comparison(base_id="a", new_id="b", speedup=0.9, speedup_low=0.8, speedup_high=1.0, base_median_ms=1,
                      new_median_ms=1.1, same_setup=True, ops=[OpDiff("aten::mm", "slower", 1.0, 1.2, 0.2, 0.83)])
    saved = _apply(["sdpa"], 0.9, True)
    saved.apply = OptimizeResult(passes=[], base_run_id="a", optimized_run_id="b", comparison=comp, accuracy=None)
    with pytest.raises(ValueError, match="no operator got faster"):
        lessons.biggest_saving(saved)


def _sized(run, batch, median_ms, seq=None):
    out = copy.deepcopy(run)
    out.config.batch_size, out.latency.median_ms = batch, median_ms
    if seq is not None:
        out.config.seq_len = seq
    return out


def test_batch_series_keeps_the_newest_run_per_size_with_the_same_setup(tiny_bert_run):
    run = tiny_bert_run[0]
    runs = [_sized(run, 4, 8.0), _sized(run, 1, 4.0), _sized(run, 4, 99.0), _sized(run, 2, 1.0, seq=run.config.seq_len
                                                                                     + 1)]
    points = lessons.batch_series(runs, run.model.name)
    assert [(p.batch_size, p.median_ms) for p in points] == [(1, 4.0), (4, 8.0)]  # older batch 4 and other seq out
    assert points[1].throughput_per_s == pytest.approx(1000 * 4 / 8.0)
    assert lessons.batch_series(runs, "resnet18") == []


def test_best_batch_is_the_highest_throughput_and_says_what_it_costs():
    points = [SweepPoint(batch_size=b, seq_len=16, threads=1, dtype="float32", device="cpu", median_ms=ms,
                         throughput_per_s=1000 * b / ms) for b, ms in [(1, 2.0), (2, 3.0), (4, 5.0), (8, 11.0)]]
    q = lessons.best_batch(points)
    assert q.correct == "batch 4"  # 800/s, against 727/s at batch 8
    assert "2.5x the latency of batch 1" in q.explanation
    assert q.notes and "knee" in q.notes[0]
    with pytest.raises(ValueError, match="at least two"):
        lessons.best_batch(points[:1])
