"""Readable tables: units in headers, values scaled to them, digits from the noise, empty device columns hidden."""
import dataclasses

import pytest

from profiler.analysis import frames as analysis
from profiler.analysis import tables
from profiler.schema import DeviceInfo, LatencyStats, ModelInfo, OpStat, ProfileConfig, ProfileRun, Totals


def _run(kind="cpu", iqr=0.05, ops=None):
    ops = ops or [OpStat("aten::addmm", calls=12, exec_ms=3.14159, trans_ms=0.0, host_ms=3.14159, flops=1.74e11,
                         total_ms=3.2, memory_bytes=339763264, input_shapes=["[[768], [1024, 768]]"]),
                  OpStat("aten::copy_", calls=4, exec_ms=0.0, trans_ms=0.0123456, host_ms=0.0123456,
                         category="transfer")]
    return ProfileRun(id="r", created="", model=ModelInfo("m", "registry", 1),
                      device=DeviceInfo(kind, "x", 2, "2.13"), config=ProfileConfig(),
                      latency=LatencyStats(samples_ms=[1.0], median_ms=1.0, iqr_ms=iqr),
                      totals=Totals(wall_ms=4, exec_ms=3.14159, trans_ms=0.0123456, coverage=0.8), ops=ops)


def test_headers_units_and_scaling():
    run = _run()
    table, formats = tables.readable(analysis.ops_frame(run), run)
    row = table.iloc[0]
    assert row["operator"] == "aten::addmm"
    assert row["GFLOP"] == pytest.approx(174.0)
    assert row["allocated (MiB)"] == pytest.approx(324.03, abs=0.01)
    assert row["GFLOP/s"] == pytest.approx(1.74e11 / 3.2e6)
    assert formats["share of time"] == "percent" and formats["GFLOP"] == "%.3f"


@pytest.mark.parametrize("iqr, digits, shown", [(0.2, 2, 3.1), (0.05, 3, 3.14), (0.001, 4, 3.142)])
def test_time_digits_follow_the_noise(iqr, digits, shown):
    run = _run(iqr=iqr)
    assert tables.time_digits(run) == digits
    table, formats = tables.readable(analysis.ops_frame(run), run)
    assert table.iloc[0]["exec (ms)"] == shown
    assert table.iloc[1]["transfer (ms)"] == pytest.approx(float(f"{0.0123456:.{digits}g}"))
    assert formats["exec (ms)"] == f"%.{digits}g"


def test_cpu_run_hides_device_columns_and_cuda_run_shows_them():
    cpu = _run("cpu")
    assert {"device_ms", "host_ms"} <= set(tables.hidden_columns(analysis.ops_frame(cpu), cpu))
    ops = [dataclasses.replace(o, device_ms=o.exec_ms) for o in cpu.ops]
    gpu = _run("cuda", ops=ops)
    table, _ = tables.readable(analysis.ops_frame(gpu), gpu)
    assert {"device (ms)", "host (ms)"} <= set(table.columns)


def test_all_zero_numbers_are_hidden_but_exec_stays():
    run = _run(ops=[OpStat("aten::relu", calls=1, exec_ms=0.0, trans_ms=0.0)])
    table, _ = tables.readable(analysis.ops_frame(run), run)
    assert "GFLOP" not in table.columns and "exec (ms)" in table.columns


def test_setup_says_what_an_imported_trace_does_not_record():
    live = _run()
    live = dataclasses.replace(live, config=ProfileConfig(batch_size=8, seq_len=128),
                               model=ModelInfo("bert", "registry", 109_482_240))
    rows = tables.setup(live)
    assert (rows["parameters"], rows["threads"], rows["batch × seq/image"]) == ("109,482,240", "2", "8 × 128")
    mlp = tables.setup(dataclasses.replace(live, config=ProfileConfig(batch_size=64, seq_len=0)))
    assert mlp["batch × seq/image"] == "64"
    trace = dataclasses.replace(live, model=ModelInfo("h100_bert", "trace", 0),
                                device=DeviceInfo("cuda", "NVIDIA H100", 0, "unknown"))
    rows = tables.setup(trace)
    assert rows["parameters"] == rows["threads"] == rows["dtype"] == tables.NOT_IN_TRACE
    assert rows["batch × seq/image"].startswith(tables.NOT_IN_TRACE)
