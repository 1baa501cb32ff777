"""Two runs compared below the operator level: kernels under their operator, transfers, GPU timeline
(profiler.analysis.diff)."""
import pytest
from testdata import DATA, SHARED_TRACES

from profiler.analysis import diff
from profiler.analysis import frames as analysis
from profiler.traces.importer import import_trace


@pytest.fixture(scope="module")
def gpu_pair():
    return (import_trace(DATA / "h100_bert_small.pt.trace.json.gz"),
            import_trace(DATA / "mi300_bert_small.pt.trace.json.gz"))


def test_h100_vs_mi300_kernels_aligned_under_their_op(gpu_pair):
    base, new = gpu_pair
    comp = analysis.compare(base, new)
    assert comp.kernels, "both runs have kernels"
    deltas = [abs(k.delta_ms) for k in comp.kernels]
    assert deltas == sorted(deltas, reverse=True)
    ops = {k.op for k in comp.kernels}
    assert "aten::addmm" in ops
    # both vendors' GEMM kernels sit under the same operator: cutlass (removed) beside Tensile Cijk (new)
    addmm = [k for k in comp.kernels if k.op == "aten::addmm"]
    assert {k.status for k in addmm} >= {"removed", "new"}
    assert any("Cijk" in k.name for k in addmm if k.status == "new")
    # operator subtotal equals each run's own kernel time under that op
    groups = {op: (a, c) for op, a, c, _ in diff.by_op(comp.kernels)}
    a, c = groups["aten::addmm"]
    assert a == pytest.approx(sum(k.time_ms for k in base.kernels if k.op == "aten::addmm"))
    assert c == pytest.approx(sum(k.time_ms for k in new.kernels if k.op == "aten::addmm"))
    changes = [abs(c - a) for _, a, c, _ in diff.by_op(comp.kernels)]
    assert changes == sorted(changes, reverse=True)
    frame = analysis.kernel_diff_frame(comp)
    assert frame.iloc[0]["name"] == "(all kernels)"


def test_gpu_and_transfer_deltas(gpu_pair):
    base, new = gpu_pair
    comp = analysis.compare(base, new)
    gpu = {m.name: m for m in comp.gpu}
    assert gpu["window_ms"].base == pytest.approx(base.gpu.window_ms)
    assert gpu["window_ms"].delta == pytest.approx(new.gpu.window_ms - base.gpu.window_ms)
    dirs = {t.direction: t for t in comp.transfers}
    assert set(dirs) == {t.direction for t in base.transfers} | {t.direction for t in new.transfers}
    for t in comp.transfers:
        assert t.delta_ms == pytest.approx(t.new_ms - t.base_ms)
    assert comp.from_dict(comp.to_dict()) == comp  # JSON round trip with the new fields


def test_same_run_has_no_change(gpu_pair):
    base, _ = gpu_pair
    comp = analysis.compare(base, base)
    assert all(k.status == "same" and k.delta_ms == 0 for k in comp.kernels)
    assert all(m.delta == 0 for m in comp.gpu)


def test_cpu_runs_compare_without_kernels(tiny_bert_run):
    run, _ = tiny_bert_run
    comp = analysis.compare(run, run)
    assert comp.kernels == [] and comp.gpu == []
    assert all(m.delta == 0 for m in comp.modules)


@pytest.mark.skipif(not (SHARED_TRACES / "diff" / "test_v100.pt.trace.json.gz").exists(),
                    reason="shared diff traces absent")
def test_control_a100_vs_test_v100():
    base = import_trace(SHARED_TRACES / "diff" / "control_a100.pt.trace.json.gz")
    new = import_trace(SHARED_TRACES / "diff" / "test_v100.pt.trace.json.gz")
    comp = analysis.compare(base, new)
    assert comp.kernels and comp.gpu
    deltas = [abs(k.delta_ms) for k in comp.kernels]
    assert deltas == sorted(deltas, reverse=True)
    assert {op for op, *_ in diff.by_op(comp.kernels)} <= {k.op for k in base.kernels} | {k.op for k in new.kernels}
    assert comp.ops and abs(comp.ops[0].delta_ms) >= abs(comp.ops[-1].delta_ms)
