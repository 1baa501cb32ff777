"""The instructor's class leaderboard: best accuracy-passing speedup per named participant, on one model."""
from optimizers.results import class_leaderboard
from profiler.schema import Accuracy, SavedComparison


def _saved(cid, who, speedup, passed=True, model="bert-tiny", kind="apply", error=""):
    acc = Accuracy(max_abs_err=0.0, rel_err=0.0, cosine=1.0 if passed else 0.5, top1_agreement=None, passed=passed)
    return SavedComparison(id=cid, created="", kind=kind, model=model, spec=model, config=None, passes=[cid],
                           speedup=speedup, speedup_low=speedup - 0.1, speedup_high=speedup + 0.1, accuracy=acc,
                           participant=who, error=error)


def test_best_verified_result_per_participant_fastest_first():
    saved = [_saved("a1", "ann", 1.5), _saved("a2", "ann", 3.0, passed=False), _saved("a3", "ann", 2.0),
             _saved("b1", "bob", 2.5, kind="search"), _saved("b2", "bob", 9.0, model="resnet18"),
             _saved("c1", "cat", 4.0, passed=False), _saved("x1", "", 5.0), _saved("e1", "eve", 8.0, error="bad file")]
    rows = class_leaderboard(saved, "bert-tiny")
    assert [(r.participant, r.comparison_id, r.speedup, r.tried) for r in rows] == [("bob", "b1", 2.5, 1),
                                                                                    ("ann", "a3", 2.0, 2)]
    assert rows[1].speedup_low == 1.9 and rows[1].passes == ["a3"]
    assert [r.participant for r in class_leaderboard(saved, "resnet18")] == ["bob"]
    assert class_leaderboard(saved, "minilm") == []
