"""CUDA paths: events timing, H2D/D2H transfers from memcpy kernels, allocator peak memory. Skipped without a GPU."""
import pytest
from testdata import needs_cuda

from profiler import ProfileConfig, load_model, profile
from profiler.devices import device_info, resolve_device

pytestmark = [pytest.mark.gpu, needs_cuda]


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"
    info = device_info(resolve_device("cuda"))
    assert info.kind == "cuda" and info.total_memory_bytes > 0 and info.capability


def test_cuda_run_has_upload_transfers_and_device_time():
    loaded = load_model("bert-tiny", batch_size=4, seq_len=32)
    run = profile(loaded, ProfileConfig(device="cuda", warmup=2, repeats=5, min_time_s=0, profile_iters=2))
    assert run.device.kind == "cuda"
    h2d = next(t for t in run.transfers if t.direction == "H2D")
    # three int64 [4, 32] input tensors are uploaded per inference
    assert h2d.bytes >= 3 * 4 * 32 * 8 and h2d.time_ms > 0
    assert run.memory.kind == "cuda-allocator" and run.memory.peak_bytes > 0
    addmm = next(o for o in run.ops if o.name == "aten::addmm")
    assert addmm.device_ms > 0 and addmm.exec_ms == pytest.approx(addmm.device_ms)
    assert run.graph.timed_nodes > 10


def test_resident_inputs_remove_the_upload():
    loaded = load_model("mlp-tiny")
    run = profile(loaded, ProfileConfig(device="cuda", warmup=1, repeats=3, min_time_s=0, profile_iters=1,
                                        inputs_on_device=True))
    assert not any(t.direction == "H2D" and t.bytes > 0 for t in run.transfers)


@needs_cuda
def test_gpu_peaks_measure_copies_both_ways(tmp_path, monkeypatch):
    from profiler.measure import peaks

    monkeypatch.setenv("OPLENS_CACHE_DIR", str(tmp_path))
    p = peaks.measure("cuda")
    assert p.fp32_gflops > 1000 and p.mem_bw_gbs > 100  # any datacenter or consumer GPU of the last decade
    assert p.h2d_pinned_gbs > 0 and p.h2d_pageable_gbs > 0 and p.d2h_pinned_gbs > 0
    assert p.h2d_pinned_gbs >= 0.8 * p.h2d_pageable_gbs  # page-locked copies are not slower
