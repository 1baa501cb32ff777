"""Machine peaks: sane measured figures, a cache that is used, published GPU specs matched by name."""
import json
import math
import subprocess
import sys

import pytest
import torch

from profiler import devices
from profiler.measure import peaks
from profiler.schema import MachineLoad


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPLENS_CACHE_DIR", str(tmp_path / "cache"))


def test_measured_cpu_peaks_are_sane_and_cached(monkeypatch):
    p = peaks.get("cpu")
    assert p.source == "measured" and p.device == "cpu" and p.threads >= 1
    for value in (p.fp32_gflops, p.bf16_gflops, p.mem_bw_gbs, p.copy_bw_gbs):
        assert value > 0 and math.isfinite(value)
    assert p.fp32_gflops < 1e5 and p.mem_bw_gbs < 1e4  # a 2-core VM is not a supercomputer
    if "amx_bf16" in devices.cpu_features():
        assert p.bf16_gflops > p.fp32_gflops
    assert p.load is not None and p.load.seconds > 0  # what other processes took while it measured
    if p.load.busy:  # measured beside a neighbour: used, never cached as this machine's truth
        assert any(n.startswith("not cached: busy machine") for n in p.notes)
        return
    monkeypatch.setattr(peaks, "measure", lambda *a, **k: pytest.fail("measured again although cached"))
    assert peaks.get("cpu") == p


def _fake(busy: bool):
    load = MachineLoad(seconds=4.0, cores=2, other_cores=1.0 if busy else 0.0, busy=busy)
    return lambda *a, **k: peaks.Peaks(device="cpu", name="x", source="measured", fp32_gflops=73.0, load=load)


def test_peaks_measured_while_busy_are_not_cached(monkeypatch):
    """Busy peaks (fp32 73 where quiet gives 136) would skew every later recommendation: used once, measured again."""
    monkeypatch.setattr(peaks, "measure", _fake(busy=True))
    assert peaks.get("cpu").fp32_gflops == 73.0
    assert not peaks.cache_path().exists()
    monkeypatch.setattr(peaks, "measure", _fake(busy=False))
    assert peaks.get("cpu").fp32_gflops == 73.0 and peaks.cached("cpu") is not None


@pytest.mark.skipif(not devices.emulated_precisions(), reason="this CPU has native bf16 and fp16")
def test_emulated_precisions_are_measured_small_and_said_so():
    """On a CPU without bf16 instructions a 2048^3 bf16 GEMM takes a minute; the peaks take seconds and say why."""
    import time
    t0 = time.perf_counter()
    p = peaks.measure("cpu")
    assert time.perf_counter() - t0 < 60
    for kind in devices.emulated_precisions():
        assert any(n.startswith(f"{kind} is emulated on this CPU") for n in p.notes), p.notes
        assert 0 < getattr(p, f"{kind}_gflops") < p.fp32_gflops  # emulated: slower than fp32 (bf16 ~100x)


def test_damaged_cache_measures_again(monkeypatch):
    peaks.cache_path().parent.mkdir(parents=True)
    peaks.cache_path().write_text("{not json")
    monkeypatch.setattr(peaks, "measure", lambda *a, **k: peaks.Peaks(device="cpu", name="x", source="measured",
                                                                        fp32_gflops=1.0))
    assert peaks.get("cpu").fp32_gflops == 1.0
    [cached] = json.loads(peaks.cache_path().read_text()).values()  # rewritten whole: the new entry alone
    assert cached["fp32_gflops"] == 1.0 and cached["name"] == "x"


@pytest.mark.parametrize("name, key, bf16", [("NVIDIA H100 80GB HBM3", "H100 HBM3", 989.4e3),
                                             ("NVIDIA A100-SXM4-80GB", "A100 80GB", 312e3),
                                             ("AMD Instinct MI300X", "MI300X", 1307.4e3),
                                             ("NVIDIA A10", "A10", 125e3)])
def test_spec_peaks_match_the_gpu_name(name, key, bf16):
    p = devices.spec_peaks(name)
    assert p.source == "spec" and f"'{key}'" in p.notes[0] and "not measured" in p.notes[0]
    assert p.bf16_gflops == pytest.approx(bf16)


def test_unknown_gpu_has_no_spec():
    assert devices.spec_peaks("Imaginary GPU 9000") is None


@pytest.mark.slow  # ~9 s of measuring; cli_contract checks the same command's keys
def test_cli_json_has_the_cpu_keys_only(tmp_path):
    import os

    env = dict(os.environ, OPLENS_CACHE_DIR=str(tmp_path / "c"))
    # 600 s: on an AVX2-only CPU the emulated bf16 GEMM alone takes minutes (measured 244-300 s in all; issue #20)
    r = subprocess.run([sys.executable, "-m", "profiler", "peaks", "--json", "--device", "cpu"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = json.loads(r.stdout)
    assert out["fp32_gflops"] > 0 and out["bf16_gflops"] > 0 and out["mem_bw_gbs"] > 0
    assert not any(k.startswith(("h2d", "d2h")) for k in out)
    r = subprocess.run([sys.executable, "-m", "profiler", "peaks", "--gpu", "Imaginary 9000"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: no published spec")


def test_gemms_taking_turns_share_a_neighbours_burst():
    # a neighbour keeps the CPU busy for the first four calls (10x slower on a fake clock): measured one after
    # another, the first kind would see only the burst; taking turns, both kinds see quiet calls too
    now = [0.0]
    calls = []

    def kernel():
        calls.append(1)
        now[0] += 0.030 if len(calls) <= 4 else 0.003

    best = peaks.best_seconds_each({"fp32": kernel, "int8": kernel}, lambda: None, min_time_s=0.0, repeats=3,
                                   clock=lambda: now[0])
    assert len(calls) == 6 and best == pytest.approx({"fp32": 0.003, "int8": 0.003})


def test_a_kernel_this_build_lacks_is_noted_and_the_others_measured(monkeypatch):
    real = peaks.gemm

    def no_int8(kind, device):
        if kind == "int8":
            raise RuntimeError("Didn't find engine for operation quantized::linear_prepack NoQEngine")
        return real(kind, device)

    monkeypatch.setattr(peaks, "GEMM_N", {"fp32": 256, "bf16": 256, "fp16": 64, "int8": 256})
    monkeypatch.setattr(peaks, "gemm", no_int8)
    p = peaks.Peaks(device="cpu", name="x", source="measured")
    rates = peaks.gemm_rates(("fp32", "bf16", "int8"), torch.device("cpu"), lambda: None, p)
    assert set(rates) == {"fp32", "bf16"} and all(v > 0 for v in rates.values())
    assert p.notes == ["int8 GEMM not measured: Didn't find engine for operation quantized::linear_prepack NoQEngine"]


def test_cpu_int8_peak_is_the_dynamic_linear_the_passes_run():
    fn, work = peaks.gemm("int8", torch.device("cpu"))
    assert work == 2 * peaks.GEMM_N["int8"] ** 3
    out = fn()
    assert out.dtype == torch.float32 and out.shape == (peaks.GEMM_N["int8"],) * 2  # int8 inside, float out


def test_model_gemm_rates_time_the_runs_own_linear_shapes(monkeypatch):
    """Precision estimates from the model's own GEMMs: bert-tiny's Linears are 32x128 by 128/512, not 2048^3."""
    import profiler
    run = profiler.profile(profiler.load_model("bert-tiny"), profiler.ProfileConfig(
        warmup=1, repeats=3, min_time_s=0.0, profile_iters=1, graph=False))
    shapes = peaks.gemm_shapes(run)
    assert (32, 128, 512) in shapes and (32, 512, 128) in shapes and (32, 128, 128) in shapes, shapes
    machine = peaks.Peaks(device="cpu", name=devices.cpu_name(), source="measured", fp32_gflops=1.0, bf16_gflops=0.5,
                          int8_gops=2.0)
    rates = peaks.model_gemm_rates(run, machine)
    assert rates.source == "model GEMM shapes" and "32x128x512" in rates.notes[0]
    assert rates.fp32_gflops > 0 and rates.int8_gops > 0
    if "bf16" in devices.emulated_precisions():
        assert rates.bf16_gflops == 0.5  # not timed: the machine's (emulated) figure stands
    if not (rates.load and rates.load.busy):  # cached for the next recommendation of this model here
        monkeypatch.setattr(peaks, "best_seconds_each", lambda *a, **k: pytest.fail("timed again although cached"))
        assert peaks.model_gemm_rates(run, machine, measure_missing=False) == rates
