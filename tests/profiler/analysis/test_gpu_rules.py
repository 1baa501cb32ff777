"""GPU rules and the GPU roofline on imported traces: published peaks per device and dtype, measured peaks from a
file, every op bound, and `profiler recommend` on a real trace as a user runs it."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from profiler import devices
from profiler.analysis import gpu_rules, recommend, roofline, why_slow
from profiler.schema import ModelRunError
from profiler.traces.importer import import_trace
from tests.testdata import DATA, in_process


@pytest.fixture(scope="module")
def h100():
    return import_trace(DATA / "h100_bert_small.pt.trace.json.gz")


def test_published_peaks_have_a_source_and_match_trace_names():
    specs = devices.gpu_specs()
    for gpu in ("H100 SXM", "H100 PCIe", "H200", "A100", "V100", "L4", "L40S", "B200", "MI300X", "MI250X"):
        assert gpu in specs and specs[gpu]["source"] and specs[gpu]["mem_bw_gbs"] > 0
    h100 = devices.spec_peaks("NVIDIA H100 80GB HBM3")
    assert h100.bf16_gflops == 989_400 and h100.tf32_gflops == 494_700 and h100.fp8_gflops == 1_978_900
    assert "H100 SXM column" in h100.notes[0]
    assert devices.spec_peaks("AMD Instinct MI300X VF").mem_bw_gbs == 5300
    assert devices.spec_peaks("Tesla V100-PCIE-32GB").fp32_gflops == 14_000
    assert devices.spec_peaks("Some Future GPU") is None


def test_every_op_of_a_gpu_trace_is_bound_against_its_own_dtype(h100):
    roof = roofline.roofline(h100, devices.spec_peaks(h100.device.name))
    assert roof.dtype == "bf16" and roof.peak_gflops == 989_400
    assert roof.points and all(p.bound in ("compute", "memory", "overhead") for p in roof.points)
    addmm = next(p for p in roof.points if p.name == "aten::addmm")
    assert addmm.flops > 0 and addmm.bytes > 0 and 0 < addmm.percent_of_roof < 100 and addmm.dtype == "bf16"
    assert addmm.percent_of_roof == pytest.approx(100 * addmm.roof_ms / addmm.time_ms)


def test_custom_ops_without_recorded_work_are_bound_unknown():
    run = import_trace(DATA / "b200_rank0_of8.pt.trace.json.gz")
    roof = roofline.roofline(run, devices.spec_peaks(run.device.name))
    moe = next(p for p in roof.points if p.name == "vllm::moe_forward")
    assert moe.bound == "unknown" and moe.headroom_ms == 0
    assert any("does not record" in n for n in roof.notes)


def test_host_wait_and_small_gemm_rules_fire_on_a_real_trace_with_evidence(h100):
    d = why_slow.diagnose(h100, devices.spec_peaks(h100.device.name))
    rules = {r.rule: r for r in d.recommendations}
    wait = rules["host-wait"]
    assert wait.passes == ["cuda-graphs"] and "waiting for the host" in wait.evidence
    assert f"{h100.gpu.idle_host_ms:.3g} ms" in wait.evidence
    small = rules["small-gemms"]
    assert "M=141 N=512 K=512" in small.evidence and "TFLOP/s" in small.evidence
    assert "overhead" not in rules  # the GPU's own rule replaces the generic one


def test_fp32_matmuls_on_tensor_cores_rule(h100):
    fp32 = replace(h100, shapes=[replace(s, dtype="fp32") for s in h100.shapes])
    peaks = devices.spec_peaks(h100.device.name)
    ctx = recommend.Context(run=fp32, roof=roofline.roofline(fp32, peaks), peaks=peaks)
    rec = gpu_rules.rule_fp32_tensor_cores(ctx)
    assert rec is not None and rec.raw_estimate > 1 and "TF32" in rec.title and "fp32 matmul-class" in rec.evidence
    assert gpu_rules.rule_fp32_tensor_cores(recommend.Context(run=h100, roof=ctx.roof, peaks=peaks)) is None  # bf16


def test_measured_peaks_file_in_tracelens_format(tmp_path):
    path = tmp_path / "mi300x.json"
    path.write_text(json.dumps({"name": "MI300X", "mem_bw_gbps": 4200,
                                "max_achievable_tflops": {"matrix_bf16": 708, "matrix_fp32": 163}}))
    p = devices.peaks_file(path)
    assert p.source == "measured" and p.bf16_gflops == 708_000 and p.mem_bw_gbs == 4200
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ModelRunError, match="needs a GEMM rate"):
        devices.peaks_file(tmp_path / "bad.json")


def cli(*args):
    from profiler.cli.commands import main

    return in_process(main, *args)


def test_recommend_on_an_imported_gpu_trace(tmp_path):
    r = cli("import", str(DATA / "h100_bert_small.pt.trace.json.gz"), "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout)["id"]
    out = cli("recommend", run_id, "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "explain 100% of the compute kernel time" in text and "Operators on the roofline" in text
    assert "M=141 N=512 K=512 bias" in text and "The GPU waits for the host" in text
    peaks = tmp_path / "h100.json"
    peaks.write_text(json.dumps({"mem_bw_gbps": 3000, "max_achievable_tflops": {"matrix_bf16": 700}}))
    measured = cli("recommend", run_id, "--peaks", str(peaks), "--runs-dir", str(tmp_path))
    assert measured.returncode == 0 and "ceilings, measured" in measured.stdout
    bad = cli("recommend", run_id, "--peaks", str(tmp_path / "none.json"), "--runs-dir", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot read peaks file")
    assert "Traceback" not in bad.stderr
    applied = cli("recommend", run_id, "--apply", "--runs-dir", str(tmp_path))
    assert applied.returncode == 2 and "no model to apply passes to" in applied.stderr


def test_recommend_on_a_trace_of_an_unnamed_gpu_asks_for_peaks(tmp_path):
    r = cli("import", str(DATA / "sampled_rank0_gpu.pt.trace.json.gz"), "--json", "--runs-dir", str(tmp_path))
    out = cli("recommend", json.loads(r.stdout)["id"], "--runs-dir", str(tmp_path))
    assert out.returncode == 2 and "no published peaks" in out.stderr and "--peaks FILE" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
