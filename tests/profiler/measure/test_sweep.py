"""Sweeps: knees and crossovers found in hand-built points; a real sweep saved, listed and printed by the CLI."""
import json
import os
import subprocess
import sys

import pytest

from profiler import store
from profiler.measure.sweep import crossovers, knees, sweep
from profiler.schema import SweepPoint


def _p(batch, ms, **kw):
    return SweepPoint(batch_size=batch, seq_len=0, threads=kw.get("threads", 2), dtype=kw.get("dtype", "float32"),
                      device=kw.get("device", "cpu"), median_ms=ms, throughput_per_s=1000 * batch / ms)


def test_knee_is_the_smallest_batch_near_the_best_throughput():
    # throughput 100, 190, 360, 380, 390 /s: 90% of 390 is 351 -> batch 4
    points = [_p(1, 10), _p(2, 2 / 0.19), _p(4, 4 / 0.36), _p(8, 8 / 0.38), _p(16, 16 / 0.39)]
    (finding,) = knees(points)
    assert "knee at batch 4" in finding and "batch 16" in finding


def test_rising_and_flat_throughput_say_so():
    assert "still rising at batch 4" in knees([_p(1, 10), _p(2, 10), _p(4, 10)])[0]
    assert "does not raise throughput" in knees([_p(1, 1), _p(2, 2.5), _p(4, 6)])[0]


def test_crossover_where_settings_swap():
    # a GPU-like device: slow at batch 1 (launch overhead), faster from batch 4
    points = [_p(1, 1.0, device="cpu"), _p(2, 2.0, device="cpu"), _p(4, 4.0, device="cpu"),
              _p(1, 3.0, device="cuda"), _p(2, 3.0, device="cuda"), _p(4, 3.1, device="cuda")]
    (finding,) = crossovers(points)
    assert finding.startswith("device crossover between batch 2 and 4") and "cpu is faster up to batch 2" in finding


def test_one_setting_faster_everywhere():
    points = [_p(1, 1.0, threads=1), _p(2, 2.0, threads=1), _p(1, 2.0, threads=2), _p(2, 5.0, threads=2)]
    (finding,) = crossovers(points)
    assert "1 thread is faster than 2 threads at every batch size" in finding and "(2.00-2.50x)" in finding


def test_failed_points_are_kept_and_left_out_of_findings():
    points = [_p(1, 1.0), _p(2, 2.0), _p(4, 4.0), SweepPoint(8, 0, 2, "float32", "cpu", error="out of memory")]
    assert len(knees(points)) == 1 and "batch 8" not in knees(points)[0]


def test_real_sweep_measures_every_point(fast_config):
    result = sweep("mlp-tiny", [1, 4], threads=[1], config=fast_config)
    assert [(p.batch_size, p.threads, p.device) for p in result.points] == [(1, 1, "cpu"), (4, 1, "cpu")]
    assert all(p.median_ms > 0 and p.peak_memory_bytes > 0 and not p.error for p in result.points)
    assert result.points[1].throughput_per_s == pytest.approx(4000 / result.points[1].median_ms)


def test_sweep_point_that_cannot_allocate_is_an_error_not_a_crash(fast_config):
    result = sweep("mlp", [2, 100_000_000], config=fast_config)
    assert not result.points[0].error and "out of memory" in result.points[1].error


def test_cli_sweep_saves_and_prints(tmp_path):
    env = dict(os.environ, OPLENS_RUNS_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "profiler", "sweep", "mlp-tiny", "--batch-sizes", "1,2", "--repeats", "3",
                        "--min-time", "0", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = json.loads(r.stdout)
    assert [p["batch_size"] for p in out["points"]] == [1, 2] and out["points"][0]["median_ms"] > 0
    assert [s.id for s in store.list_sweeps(tmp_path)] == [out["id"]]
    assert store.list_runs(tmp_path) == []  # a sweep is not a run
    r = subprocess.run([sys.executable, "-m", "profiler", "sweep", "mlp-tiny", "--batch-sizes", "0,x"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
