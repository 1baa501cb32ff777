"""optimizers.tables: the rows the Optimize page, the CLI and the benchmark show, on a hand-made search result and
applicability table."""
import pytest

from optimizers import tables
from profiler.schema import Accuracy, Candidate, SearchResult

ACC = Accuracy(max_abs_err=1e-3, rel_err=1e-4, cosine=0.999876, top1_agreement=1.0, passed=True, kind="logits")
RESULT = SearchResult(base_median_ms=10.0, best=None, leaderboard=[
    Candidate(passes=["bf16", "torch-compile"], median_ms=4.0, speedup=2.5, speedup_low=2.25, speedup_high=2.75,
              apply_s=12.34, accuracy=ACC),
    Candidate(passes=["magnitude-prune"], apply_s=0.5, status="inaccurate", reason="outside tolerance " + "x" * 80),
])
CHECK = [{"pass": "bf16", "family": "precision", "applies": True, "why not": "", "description": "d"},
         {"pass": "fp16", "family": "precision", "applies": False, "why not": "fp16 runs on cuda only",
          "description": ""},
         {"pass": "threads", "family": "runtime", "applies": True, "why not": "", "description": ""}]


def test_leaderboard_rows():
    top, pruned = tables.leaderboard_rows(RESULT)
    assert list(top) == list(tables.LEADERBOARD_COLUMNS)
    assert top == {"pipeline": "bf16 + torch-compile", "status": "ok", "median ms": 4.0, "speedup": 2.5,
                   "range": "2.25-2.75", "cosine": 0.999876, "apply s": 12.34, "why not": ""}
    assert (pruned["median ms"], pruned["speedup"], pruned["range"], pruned["cosine"]) == (None, None, "", None)


def test_leaderboard_text():
    header, rule, top, pruned = tables.leaderboard_text(RESULT).splitlines()
    assert header.split() == ["pipeline", "status", "median", "ms", "speedup", "range", "cosine", "apply", "s", "why",
                              "not"]
    assert top.split() == ["bf16", "+", "torch-compile", "ok", "4", "2.50", "2.25-2.75", "0.99988", "12.3"]
    assert pruned.split()[:4] == ["magnitude-prune", "inaccurate", "0.5", "outside"]
    assert pruned.endswith("outside tolerance " + "x" * 80)  # the reason in full: a cut one reads as a different one


def test_which_passes_apply():
    assert tables.usable_passes(CHECK) == ["bf16", "threads"]
    rows = tables.applicability_rows(CHECK)
    assert [r["applies"] for r in rows] == ["yes", "no", "yes"] and rows[1]["why not"] == "fp16 runs on cuda only"
    assert CHECK[0]["applies"] is True  # the check's own rows are left as they were


@pytest.mark.parametrize("rows", [[], [{"pass": "bf16", "applies": False}]])
def test_no_usable_pass(rows):
    assert tables.usable_passes(rows) == []
