"""Why is this run slow? One engine's answer: the run on its roofline, the findings (analysis/findings.py) and the
recommendations (analysis/recommend.py), which share their definitions. The Why slow page and `profiler recommend`
both show what `diagnose` returns."""
from __future__ import annotations

from dataclasses import dataclass

from profiler.analysis import findings as fd
from profiler.analysis import recommend as rc
from profiler.analysis import roofline as rl
from profiler.schema import Peaks, ProfileRun, Recommendation, Roofline, Sweep


@dataclass
class Diagnosis:
    roofline: Roofline
    findings: list[fd.Finding]
    recommendations: list[Recommendation]
    sweep: Sweep | None = None


def diagnose(run: ProfileRun, peaks: Peaks, sweep: Sweep | None = None, pairs: list[dict] | None = None,
             passes: frozenset[str] = frozenset(), top: int = 3, gemm: Peaks | None = None) -> Diagnosis:
    """The roofline of `run` against `peaks`, its findings, and the recommendations that act on them (estimates
    scaled by `pairs`; rules may name `passes`; precision estimates from `gemm`, the model's own GEMM rates, when
    given)."""
    roof = rl.roofline(run, peaks)
    return Diagnosis(roofline=roof, findings=fd.find(run, roof, top),
                     recommendations=rc.recommend(run, peaks, sweep, pairs, passes, roof=roof, gemm=gemm),
                     sweep=sweep)
