"""profiler.profile on real (tiny) models: the numbers are internally consistent and match what the model does."""
import textwrap
import threading

import pytest
import torch

import sample_models
from profiler import ModelRunError, ProfileCancelled, ProfileConfig, load_model, profile

TINY = [n for n in sample_models.names() if n.endswith("-tiny")]


def _check_run(run, loaded):
    assert len(run.latency.samples_ms) >= 3 and run.latency.median_ms > 0
    assert run.latency.min_ms <= run.latency.median_ms <= run.latency.p90_ms <= run.latency.p99_ms
    t = run.totals
    assert t.exec_ms > 0 and t.trans_ms >= 0
    assert t.coverage == pytest.approx((t.exec_ms + t.trans_ms) / t.wall_ms)
    assert t.unexplained_ms == pytest.approx(t.wall_ms - t.exec_ms - t.trans_ms)
    assert sum(o.exec_ms for o in run.ops) == pytest.approx(t.exec_ms)
    assert sum(o.trans_ms for o in run.ops) == pytest.approx(t.trans_ms)
    assert run.ops == sorted(run.ops, key=lambda o: o.exec_ms + o.trans_ms, reverse=True)
    assert run.device.kind == "cpu" and run.device.threads >= 1 and run.device.torch == torch.__version__
    assert run.model.parameters == loaded.info.parameters
    ids = [n.id for n in run.graph.nodes]
    assert len(ids) == len(set(ids))
    assert all(i in set(ids) for n in run.graph.nodes for i in n.inputs), "every edge ends at a node"
    assert run.memory.peak_bytes >= run.memory.baseline_bytes > 0
    assert run.overhead_ratio > 0 and run.profiled_latency.median_ms > 0


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_model_profiles(name, fast_config):
    loaded = load_model(name)
    run = profile(loaded, fast_config)
    _check_run(run, loaded)
    assert run.graph.method == "torch.export", run.graph.note
    assert run.graph.timed_nodes >= 3


def test_flops_and_shapes_of_a_known_linear(tmp_path, fast_config):
    f = tmp_path / "lin.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Linear(64, 32), torch.randn(16, 64)\n")
    run = profile(load_model(f"{f}:build"), fast_config)
    addmm = next(o for o in run.ops if o.name == "aten::addmm")
    assert addmm.calls == 1
    assert addmm.flops == 2 * 16 * 64 * 32
    assert addmm.input_shapes == ["[[32], [16, 64], [64, 32]]"]
    node = next(n for n in run.graph.nodes if n.op == "aten::linear")
    assert node.flops == 2 * 16 * 64 * 32
    assert node.output_shape == "[16, 32]" and node.output_dtype == "float32"
    assert node.exec_ms > 0


def test_host_copies_are_counted_as_transfer_with_bytes(tmp_path, fast_config):
    f = tmp_path / "copy.py"
    f.write_text(textwrap.dedent("""
        import torch
        class Transposer(torch.nn.Module):
            def forward(self, x):
                return x.t().contiguous().to(torch.float64)
        def build():
            return Transposer(), torch.randn(256, 512)
    """))
    run = profile(load_model(f"{f}:build"), fast_config)
    host = next(t for t in run.transfers if t.direction == "host")
    # contiguous() copies 256*512 float32, .to(float64) writes 256*512 float64
    assert host.bytes == 256 * 512 * 4 + 256 * 512 * 8
    assert host.calls == 2 and host.time_ms > 0
    assert "host data movement" in run.totals.trans_label
    assert run.totals.trans_ms > 0
    trans_nodes = [n for n in run.graph.nodes if n.trans_ms > 0]
    assert {n.op for n in trans_nodes} >= {"aten::contiguous"}


def test_module_tree_fallback_for_untraceable_model(tmp_path, fast_config):
    f = tmp_path / "dyn.py"
    f.write_text(textwrap.dedent("""
        import torch
        class DataDependent(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = torch.nn.Linear(8, 8)
                self.b = torch.nn.Linear(8, 8)
            def forward(self, x):
                if x.sum().item() > 0:  # data-dependent Python control flow: neither export nor fx can trace it
                    return self.a(x)
                return self.b(x)
        def build():
            return DataDependent(), torch.ones(4, 8)
    """))
    run = profile(load_model(f"{f}:build"), fast_config)
    assert run.graph.method == "module-tree"
    assert "torch.export failed" in run.graph.note
    a = next(n for n in run.graph.nodes if n.module == "a")
    assert a.exec_ms > 0 and a.op == "Linear"


def test_exported_pt2_uses_its_own_graph(tmp_path, fast_config):
    m = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    torch.export.save(torch.export.export(m, (torch.randn(2, 8),)), str(tmp_path / "m.pt2"))
    run = profile(load_model(str(tmp_path / "m.pt2")), fast_config)
    assert run.graph.method == "torch.export"
    assert [n.op for n in run.graph.nodes if n.kind == "call_function"][:2] == ["aten::linear", "aten::relu"]


def test_torchscript_graph_via_converter(tmp_path, fast_config):
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())).save(str(tmp_path / "s.pt"))
    run = profile(load_model(str(tmp_path / "s.pt"), batch_size=2), fast_config)
    assert run.graph.method == "torch.export"
    assert any(n.op == "aten::linear" and n.exec_ms > 0 for n in run.graph.nodes)


def test_model_that_crashes_gives_model_run_error(tmp_path, fast_config):
    f = tmp_path / "bad.py"
    f.write_text(
        "import torch\nclass Bad(torch.nn.Linear):\n    def forward(self, x):\n        raise RuntimeError('kaput')\n"
        "def build():\n    return Bad(2, 2), torch.ones(1, 2)\n"
    )
    with pytest.raises(ModelRunError, match="raised RuntimeError while running: kaput"):
        profile(load_model(f"{f}:build"), fast_config)


def test_shape_mismatch_is_named(tmp_path, fast_config):
    f = tmp_path / "mismatch.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Linear(8, 2), torch.ones(3, 5)\n")
    with pytest.raises(ModelRunError, match="rejected its inputs .*shape"):
        profile(load_model(f"{f}:build"), fast_config)


def test_out_of_memory_is_named(tmp_path, fast_config):
    f = tmp_path / "oom.py"
    f.write_text("import torch\nclass Oom(torch.nn.Linear):\n    def forward(self, x):\n"
                 "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20 GiB')\n"
                 "def build():\n    return Oom(2, 2), torch.ones(1, 2)\n")
    with pytest.raises(ModelRunError, match="out of GPU memory: .* asked for 20 GiB. Lower --batch-size"):
        profile(load_model(f"{f}:build"), fast_config)


def test_cancel_stops_the_measurement(fast_config):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ProfileCancelled):
        profile(load_model("mlp-tiny"), fast_config, cancel=cancel)


def test_progress_is_reported_in_order(fast_config):
    seen = []
    profile(load_model("mlp-tiny"), fast_config, progress=lambda stage, f: seen.append((stage, f)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"timing", "recording operators", "done"} <= {s for s, _ in seen}


def test_profiling_leaves_the_callers_model_alone(fast_config):
    loaded = load_model("mlp-tiny")
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    profile(loaded, ProfileConfig(warmup=1, repeats=3, min_time_s=0, profile_iters=1, dtype="bfloat16"))
    after = loaded.module.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())


def test_bad_device_and_dtype(fast_config):
    loaded = load_model("mlp-tiny")
    with pytest.raises(ModelRunError, match="unknown dtype"):
        profile(loaded, ProfileConfig(dtype="int3"))
    if not torch.cuda.is_available():
        with pytest.raises(ModelRunError, match="no CUDA GPU is available"):
            profile(loaded, ProfileConfig(device="cuda"))


def test_minilm_real_model_profiles(fast_config):
    loaded = load_model("minilm-tiny")
    run = profile(loaded, fast_config)
    assert run.graph.method == "torch.export" and run.graph.timed_nodes > 20


@pytest.mark.slow
class TestBertBase:
    """The issue's acceptance figure: BERT-base, batch 8, seq 128 on this CPU."""

    def test_coverage_and_graph(self):
        loaded = load_model("bert-base", batch_size=8, seq_len=128)
        run = profile(loaded, ProfileConfig(warmup=1, repeats=3, min_time_s=0, profile_iters=2))
        assert 0.90 <= run.totals.coverage <= 1.05, run.totals
        assert run.graph.method == "torch.export"
        assert run.graph.timed_nodes >= 300
        addmm = next(o for o in run.ops if o.name == "aten::addmm")
        # 12 layers x 6 linears + pooler + classifier over 1024 tokens: ~174 GFLOP per inference
        assert addmm.flops == pytest.approx(1.74e11, rel=0.01)

    def test_dynamic_int8_graph_is_data_flow(self):
        from optimizers import apply_pipeline
        from profiler.devices import resolve_device
        from profiler.measure.graph import QUANTIZED_METHOD

        loaded = load_model("bert-base", batch_size=8, seq_len=128)
        q, _ = apply_pipeline(loaded, ["dynamic-int8"], resolve_device("cpu"))
        run = profile(q, ProfileConfig(warmup=1, repeats=3, min_time_s=0, profile_iters=2))
        int8 = [n for n in run.graph.nodes if n.op == "DynamicQuantizedLinear"]
        assert run.graph.method == QUANTIZED_METHOD and run.graph.timed_nodes >= 300
        assert len(int8) == 74 and all(n.exec_ms > 0 for n in int8)
        assert sum(n.flops for n in run.graph.nodes) == pytest.approx(sum(o.flops for o in run.ops))
