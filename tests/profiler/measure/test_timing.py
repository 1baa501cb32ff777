import pytest

from profiler.measure.timing import measure
from profiler.stats import median_ci, significant, summarize


def test_summarize_quantiles_on_known_samples():
    s = summarize([float(x) for x in range(1, 101)])  # 1..100
    assert s.median_ms == pytest.approx(50.5)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.iqr_ms == pytest.approx(75.25 - 25.75)
    assert s.min_ms == 1.0
    assert s.ci_low_ms <= s.median_ms <= s.ci_high_ms
    assert s.noise == "unreliable"  # IQR is ~98% of the median


@pytest.mark.parametrize("spread, noise", [(0.02, "ok"), (0.15, "noisy"), (0.40, "unreliable")])
def test_noise_thresholds(spread, noise):
    # samples at 100*(1-spread/2) and 100*(1+spread/2), half each: IQR = 100*spread
    xs = [100 * (1 - spread / 2)] * 10 + [100 * (1 + spread / 2)] * 10
    assert summarize(xs).noise == noise


def test_median_ci_brackets_median_and_narrows_with_n():
    small = median_ci(sorted(float(x) for x in range(11)))
    big = median_ci(sorted(float(x % 11) for x in range(1100)))
    assert small[0] < 5 < small[1]
    assert big == (5.0, 5.0)


def test_measure_meets_both_count_and_time():
    calls = []

    def fn(samples):
        calls.append(1)
        samples.append(1.0)

    stats = measure(fn, warmup=2, repeats=5, min_time_s=0.0, max_time_s=10)
    assert len(stats.samples_ms) == 5 and len(stats.warmup_ms) == 2 and len(calls) == 7
    stats = measure(fn, warmup=0, repeats=1, min_time_s=0.05, max_time_s=10)
    assert len(stats.samples_ms) > 1  # kept going until 50 ms had passed


def test_significant_digits_follow_the_spread():
    assert significant(1234.567, 10) == "1235"
    assert significant(1.23456, 0.01) == "1.23"
    assert significant(0.012345, 0.0001) == "0.0123"
