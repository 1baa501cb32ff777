"""Robust statistics over latency samples: median with its 95% interval, percentiles, IQR, the noise verdict and the
digits the noise supports. Pure functions, shared by live timing (measure/timing.py) and imported traces.
"""
from __future__ import annotations

import math
import statistics

from profiler.schema import LatencyStats, MachineLoad

NOISY, UNRELIABLE = 0.10, 0.25  # IQR / median thresholds, as in torch.utils.benchmark's spirit
# busy: other processes took at least this share of the machine's CPU time while we timed (on 2 cores, a fifth of a
# core), or the hypervisor stole at least STEAL_SHARE of it
BUSY_SHARE = 0.10
STEAL_SHARE = 0.05


def _quantile(sorted_xs: list[float], q: float) -> float:
    if not sorted_xs:
        return 0.0
    pos = (len(sorted_xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def median_ci(sorted_xs: list[float]) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median (order statistics, normal approximation)."""
    n = len(sorted_xs)
    if n < 3:
        return (sorted_xs[0], sorted_xs[-1]) if sorted_xs else (0.0, 0.0)
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)) - 1)
    return sorted_xs[lo], sorted_xs[max(hi, lo)]


def summarize(samples_ms: list[float], warmup_ms: list[float] | None = None) -> LatencyStats:
    xs = sorted(samples_ms)
    if not xs:
        return LatencyStats(samples_ms=[], warmup_ms=list(warmup_ms or []), noise="unreliable")
    median = _quantile(xs, 0.5)
    iqr = _quantile(xs, 0.75) - _quantile(xs, 0.25)
    ratio = iqr / median if median > 0 else 0.0
    noise = "unreliable" if ratio > UNRELIABLE else "noisy" if ratio > NOISY else "ok"
    lo, hi = median_ci(xs)
    return LatencyStats(
        samples_ms=list(samples_ms), median_ms=median, mean_ms=statistics.fmean(xs),
        std_ms=statistics.stdev(xs) if len(xs) > 1 else 0.0, min_ms=xs[0],
        p10_ms=_quantile(xs, 0.10), p90_ms=_quantile(xs, 0.90), p99_ms=_quantile(xs, 0.99), iqr_ms=iqr,
        ci_low_ms=lo, ci_high_ms=hi, warmup_ms=list(warmup_ms or []), noise=noise)


def noise_message(stats: LatencyStats) -> str:
    """Plain-language warning for a noisy measurement; empty when the spread is small."""
    if stats.noise == "ok" or not stats.median_ms:
        return ""
    pct = 100 * stats.iqr_ms / stats.median_ms
    return (f"latency is {stats.noise}: IQR is {pct:.0f}% of the median; close other programs or raise repeats "
            "before trusting small differences")


def significant(value: float, spread: float) -> str:
    """Format `value` with only the digits its spread supports (at least 2 significant figures)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits_value = math.floor(math.log10(abs(value)))
    digits_spread = math.floor(math.log10(spread)) if spread > 0 else digits_value - 3
    decimals = max(0, -min(digits_spread, digits_value - 1))
    return f"{value:.{decimals}f}"


def throughput_per_s(batch_size: int, median_ms: float) -> float:
    """Samples per second at a median latency: the steady state a user gets. 0 without a latency."""
    return 1000 * batch_size / median_ms if median_ms > 0 else 0.0


def verdict(speedup: float, low: float, high: float) -> str:
    """"faster" or "slower" when the whole range of a speedup lies on one side of 1.0, else "inconclusive"."""
    if low > 1.0:
        return "faster"
    if 0 < high < 1.0:
        return "slower"
    return "inconclusive"


def verdict_line(speedup: float, low: float, high: float, busy: str = "") -> str:
    """One line a person can act on: the speedup with its range, or why there is no winner yet."""
    if verdict(speedup, low, high) != "inconclusive":
        return ""
    why = "the machine was busy" if busy else "the timings are too spread"
    return (f"inconclusive: the speedup's range {low:.2f}-{high:.2f}x spans 1.0 ({why}); measure again with more "
            "repeats, or on a quieter machine, before calling a winner")


def describe_load(load: MachineLoad) -> str:
    """One line for people when the load was large enough to matter; empty when quiet."""
    if not load.busy:
        return ""
    parts = [f"other processes kept {load.other_cores:.1f} of {load.cores} CPUs busy"]
    if load.steal_share >= STEAL_SHARE:
        parts.append(f"the hypervisor took {load.steal_share:.0%} of the CPU time (steal)")
    return ("busy machine while timing: " + " and ".join(parts) + f" (over {load.seconds:.0f} s); the figures may "
            "be slower and noisier than this model's own speed: measure again on a quieter machine")


def combine_loads(*loads: MachineLoad | None) -> MachineLoad | None:
    """The load over several timed regions (a comparison's two runs): time-weighted, busy if any part was."""
    loads = [x for x in loads if x is not None]
    if not loads:
        return None
    seconds = sum(x.seconds for x in loads) or 1e-9
    out = MachineLoad(seconds=seconds, cores=max(x.cores for x in loads),
                      other_cores=sum(x.other_cores * x.seconds for x in loads) / seconds,
                      steal_share=sum(x.steal_share * x.seconds for x in loads) / seconds,
                      busy=any(x.busy for x in loads))
    out.text = describe_load(out)
    return out
