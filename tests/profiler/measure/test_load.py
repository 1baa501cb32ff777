"""A busy machine: the load other processes put on it is measured and saved with every run, comparison and search,
said in one line when it matters, and verdicts never name a winner whose range spans 1.0 — checked with a real CPU
hog beside the measurement."""
import subprocess
import sys
import time

import pytest

import optimizers
import profiler
from profiler import stats
from profiler.analysis import frames
from profiler.measure.load import LoadMeter
from profiler.schema import Candidate, HeadToHead, MachineLoad, ProfileConfig, ProfileRun

QUICK = ProfileConfig(warmup=1, repeats=8, min_time_s=0.5, profile_iters=1, graph=False)


@pytest.fixture
def hog():
    """Two processes spinning, one per core of this 2-core machine (more cores: one per core)."""
    import os
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    time.sleep(0.5)
    yield
    for p in procs:
        p.kill()
        p.wait()


def test_the_meter_sees_another_process_and_not_our_own_work(hog):
    meter = LoadMeter()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:  # our own busy loop is not "other processes"
        pass
    load = meter.result()
    assert load.busy and load.other_cores >= 0.5, load
    assert load.text.startswith("busy machine while timing: other processes kept")


@pytest.mark.parametrize("speedup, low, high, verdict", [(1.4, 1.1, 1.8, "faster"), (0.7, 0.5, 0.9, "slower"),
                                                         (1.3, 0.8, 2.4, "inconclusive"),
                                                         (7.62, 0.09, 2.43, "inconclusive")])
def test_verdicts_follow_the_range(speedup, low, high, verdict):
    assert stats.verdict(speedup, low, high) == verdict
    line = stats.verdict_line(speedup, low, high, busy="busy")
    assert (line.startswith("inconclusive: the speedup's range") and "machine was busy" in line) == (
        verdict == "inconclusive")


def test_loads_combine_time_weighted_and_busy_if_any_part_was():
    quiet = MachineLoad(seconds=3.0, cores=2, other_cores=0.0)
    busy = MachineLoad(seconds=1.0, cores=2, other_cores=2.0, busy=True)
    both = stats.combine_loads(quiet, None, busy)
    assert both.busy and both.other_cores == pytest.approx(0.5) and both.seconds == 4.0 and both.text
    assert stats.combine_loads(None) is None


def _search_verdict(best, board, final=None, load=None):
    from optimizers.search import verdict
    return verdict(best, board, final, load)


def test_a_search_names_no_winner_from_overlapping_ranges():
    """The CNN search that answered "best: torch-compile 7.62x" from candidates whose ranges ran 0.09-2.43x."""
    best = Candidate(passes=["torch-compile"], speedup=7.62, speedup_low=0.09, speedup_high=12.0)
    runner = Candidate(passes=["channels-last"], speedup=1.5, speedup_low=0.8, speedup_high=2.43)
    decided, line = _search_verdict(best, [best, runner])
    assert decided == "inconclusive" and "spans 1.0" in line
    best = Candidate(passes=["a"], speedup=2.0, speedup_low=1.6, speedup_high=2.5)
    runner = Candidate(passes=["b"], speedup=1.9, speedup_low=1.5, speedup_high=2.4)
    assert _search_verdict(best, [best, runner])[0] == "inconclusive"  # overlapping, not re-timed
    close = HeadToHead(passes=["a"], single=["b"], speedup=1.03, speedup_low=0.95, speedup_high=1.1, rounds=3)
    decided, line = _search_verdict(best, [best, runner], close)
    assert decided == "inconclusive" and "ABBA" in line
    clear = HeadToHead(passes=["a"], single=["b"], speedup=1.3, speedup_low=1.2, speedup_high=1.4, rounds=3)
    assert _search_verdict(best, [best, runner], clear)[0] == "confirmed"


def _consistent(speedup: float, low: float, high: float, verdict: str) -> bool:
    """A verdict that names a direction only when the whole range lies on that side of 1.0."""
    return verdict == "inconclusive" or (verdict == "faster" and low > 1.0) or (verdict == "slower" and high < 1.0)


def test_under_a_cpu_hog_runs_comparisons_and_searches_say_so(hog, tmp_path):
    loaded = profiler.load_model("bert-tiny", batch_size=2, seq_len=32)
    base = profiler.profile(loaded, QUICK)
    new = profiler.profile(loaded, QUICK)  # the same model twice: any "winner" would be noise
    assert base.load.busy and any(n.startswith("busy machine while timing") for n in base.notes)
    assert ProfileRun.from_dict(base.to_dict()).load == base.load  # saved with the run
    comp = frames.compare(base, new)
    assert comp.load.busy and _consistent(comp.speedup, comp.speedup_low, comp.speedup_high, comp.verdict), comp
    result = optimizers.search(loaded, QUICK, budget_s=20, passes=["threads", "dynamic-int8", "sdpa"])
    assert result.load is not None and result.load.busy
    assert result.verdict in ("confirmed", "inconclusive") and "busy machine while timing" in result.verdict_text
    best = result.best
    if result.verdict == "confirmed" and best.passes:
        assert best.speedup_low > 1.0  # a named winner's gain clears the noise ...
        if result.finalists is not None:  # ... and so does its lead over the runner-up
            assert result.finalists.speedup_low > 1.0
