"""Data-flow graphs for optimized models: the graph a pass produces is captured as data flow, not a module chain,
and its nodes are timed on the optimized model's own kernels."""
import textwrap

import pytest
from torch import nn

from optimizers import apply_pipeline
from profiler import load_model, profile
from profiler.devices import resolve_device
from profiler.measure.graph import QUANTIZED_METHOD

CPU = resolve_device("cpu")


def _assert_dag(graph):
    seen = set()
    for n in graph.nodes:  # graph order is a topological order: every edge comes from an earlier node
        assert all(i in seen for i in n.inputs), (n.id, n.inputs)
        seen.add(n.id)


@pytest.fixture(scope="module")
def bert_tiny_runs():
    from profiler import ProfileConfig

    config = ProfileConfig(warmup=1, repeats=3, min_time_s=0.0, profile_iters=2)
    loaded = load_model("bert-tiny")
    q, _ = apply_pipeline(loaded, ["dynamic-int8"], CPU)
    return profile(loaded, config), profile(q, config), q


def test_dynamic_int8_graph_is_data_flow_timed_on_the_int8_modules(bert_tiny_runs):
    base, run, q = bert_tiny_runs
    g = run.graph
    assert g.method == QUANTIZED_METHOD, g.note
    _assert_dag(g)
    kinds = {n.id: n.kind for n in g.nodes}
    joins = [n for n in g.nodes if n.kind == "call_function"
             and sum(kinds[i] != "placeholder" for i in n.inputs) > 1]
    assert any(n.op == "aten::add" for n in joins), "a residual add joins two computed values"
    int8 = [n for n in g.nodes if n.op == "DynamicQuantizedLinear"]
    assert len(int8) == 14 and all(n.exec_ms > 0 for n in int8)
    query = next(n for n in int8 if n.module == "bert.encoder.layer.0.attention.self.query")
    assert query.flops == 2 * 32 * 128 * 128
    assert query.kind == "call_module" and query.output_shape == "[2, 16, 128]"
    assert sum(n.flops for n in g.nodes) == pytest.approx(sum(o.flops for o in run.ops))
    assert g.timed_nodes >= 0.8 * len([n for n in g.nodes if n.kind == "call_function"])


def test_int8_nodes_pair_with_the_float_graph(bert_tiny_runs):
    base, run, q = bert_tiny_runs
    float_linears = {n.id for n in base.graph.nodes if n.op == "aten::linear"}
    assert {n.id for n in run.graph.nodes if n.op == "DynamicQuantizedLinear"} == {f"{i}_int8" for i in float_linears}
    assert not any(type(m) is nn.Linear for m in q.module.modules()), "the stand-ins were swapped back out"


@pytest.mark.parametrize("passes", [["bf16"], ["static-int8"]])
def test_other_optimized_models_keep_a_data_flow_graph(passes, fast_config):
    new, _ = apply_pipeline(load_model("bert-tiny"), passes, CPU)
    g = profile(new, fast_config).graph
    assert g.method == "torch.export", g.note
    _assert_dag(g)
    assert g.timed_nodes > 20 and sum(n.flops for n in g.nodes) > 0


def test_module_tree_nodes_carry_their_own_flops(tmp_path, fast_config):
    f = tmp_path / "dyn.py"
    f.write_text(textwrap.dedent("""
        import torch
        class DataDependent(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = torch.nn.Linear(8, 16)
                self.b = torch.nn.Linear(16, 8)
            def forward(self, x):
                if x.sum().item() > 0:  # data-dependent Python control flow: neither export nor fx can trace it
                    return self.b(self.a(x)) @ torch.ones(8, 8)
                return x
        def build():
            return DataDependent(), torch.ones(4, 8)
    """))
    run = profile(load_model(f"{f}:build"), fast_config)
    assert run.graph.method == "module-tree", run.graph.note
    own = {n.module: n.flops for n in run.graph.nodes}
    assert own == {
        "": 2 * 4 * 8 * 8,
        "a": 2 * 4 * 8 * 16,
        "b": 2 * 4 * 16 * 8,
    }  # the root's own matmul, not its children's
