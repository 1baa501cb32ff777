"""Work per operator and signature from an imported trace's recorded shapes, checked against TraceLens's own tables
for the same real traces (tests/data/tracelens: TraceLens commit 171dd74, its README says how they were made)."""
from __future__ import annotations

import re
from collections import defaultdict

import pandas as pd
import pytest

from profiler.traces.importer import import_trace
from tests.testdata import DATA

REF = DATA / "tracelens"
GEMM_TRACES = ["h100_bert_small", "mi300_bert_small", "b200_rank0_of8"]


@pytest.fixture(scope="module")
def runs():
    return {name: import_trace(DATA / f"{name}.pt.trace.json.gz") for name in GEMM_TRACES + ["sglang_qwen3_8b_decode"]}


def _ours(run, family):
    """Our signature rows of one family, grouped by (op, params) as TraceLens's rows are (M, N, K, bias)."""
    out = defaultdict(list)
    for s in run.shapes:
        if s.family == family:
            out[(s.op, s.params)].append(s)
    return out


@pytest.mark.parametrize("name", GEMM_TRACES)
def test_every_gemm_shape_matches_tracelens(runs, name):
    ref = pd.read_csv(REF / name / "GEMM.csv")
    ours = _ours(runs[name], "gemm")
    groups = ref.groupby(["name", "param: M", "param: N", "param: K", "param: bias"])
    assert len(groups) >= 3
    for (op, m, n, k, bias), rows in groups:
        params = f"M={m} N={n} K={k}" + (" bias" if bias else "")
        assert (op, params) in ours, f"{name}: no row for {op} {params}; ours: {sorted(ours)}"
        mine = ours[(op, params)]
        flops, moved = mine[0].flops, mine[0].bytes
        # TraceLens adds M*N FLOPs for a bias; ours keeps torch's flop_counter convention (2*M*N*K)
        assert flops == pytest.approx(rows["GFLOPS_first"].iloc[0] * 1e9, rel=0.01)
        assert flops + (m * n if bias else 0) == pytest.approx(rows["GFLOPS_first"].iloc[0] * 1e9, rel=1e-9)
        assert moved == pytest.approx(rows["Data Moved (MB)_first"].iloc[0] * 2**20, rel=1e-9)
        calls = sum(s.calls for s in mine)
        assert calls == rows["name_count"].sum()
        kernel_us = sum(s.time_ms for s in mine) * 1e3
        assert kernel_us == pytest.approx(rows["Kernel Time (µs)_sum"].sum(), rel=0.01)
        if len(rows) == 1 and len(mine) == 1:  # one signature both sides: the median call and its rates agree
            assert mine[0].median_us == pytest.approx(rows["Kernel Time (µs)_median"].iloc[0], rel=0.01)
            assert mine[0].tflops == pytest.approx(rows["TFLOPS/s_median"].iloc[0], rel=0.02)


@pytest.mark.parametrize("name", ["h100_bert_small", "mi300_bert_small"])
def test_attention_matches_tracelens(runs, name):
    ref = pd.read_csv(REF / name / "SDPA_fwd.csv").iloc[0]
    (row,) = [s for s in runs[name].shapes if s.family == "attention"]
    assert f"Sq={ref['param: N_Q']} Skv={ref['param: N_KV']} D={ref['param: d_h_qk']}" in row.params
    assert row.flops == pytest.approx(ref["GFLOPS_first"] * 1e9, rel=1e-9)
    assert row.bytes == pytest.approx(ref["Data Moved (MB)_first"] * 2**20, rel=1e-9)
    # TraceLens times the public op's subtree; ours is the flash kernel's op: the same kernels
    assert row.time_ms * 1e3 == pytest.approx(ref["Kernel Time (µs)_sum"], rel=0.01)


@pytest.mark.parametrize("name", ["h100_bert_small", "mi300_bert_small"])
def test_flop_coverage_is_shown_and_high_where_shapes_are_recorded(runs, name):
    run = runs[name]
    assert run.totals.flop_coverage > 0.95
    assert all(o.flops_known for o in run.ops if o.exec_ms > 0.001)
    addmm = next(o for o in run.ops if o.name == "aten::addmm")
    assert addmm.dtype == "bf16" and addmm.flops > 0 and addmm.bytes > 0


def test_unknown_work_is_listed_by_time_not_zeroed(runs):
    """b200 (vLLM, MXFP4 MoE): the MoE op records activations only, so its work is unknown; it is listed first among
    the unexplained rows with its time, and coverage says how much is explained."""
    run = runs["b200_rank0_of8"]
    unknown = [s for s in run.shapes if not s.known]
    assert unknown[0].op == "vllm::moe_forward" and unknown[0].time_ms == pytest.approx(6.078, abs=0.01)
    assert 0.1 < run.totals.flop_coverage < 0.5
    moe = next(o for o in run.ops if o.name == "vllm::moe_forward")
    assert not moe.flops_known


def test_graph_replay_is_unexplained(runs):
    """SGLang decode runs in a HIP graph: its kernels have no op and no shapes, so almost nothing is explained."""
    assert runs["sglang_qwen3_8b_decode"].totals.flop_coverage < 0.05


def test_signature_params_parse():
    assert re.fullmatch(r"M=\d+ N=\d+ K=\d+( bias)?", "M=141 N=512 K=512 bias")
