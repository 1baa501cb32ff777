"""ONNX Runtime's session profile and OpenVINO's per-layer counters read into OpStat and Graph: on profiles recorded
here from the bert-tiny sample exported with torch.onnx (nothing of OpLens's own exporter), on a layer built with
OpenVINO's opset, and on hand-made event lists for the edge cases (warm-up runs, profiles without run events)."""
import datetime
import json

import numpy as np
import pytest
import torch
from testdata import DATA

import profiler
from profiler import TraceFormatError
from profiler import op_categories as oc
from profiler.traces import runtimes as rt


@pytest.fixture(scope="module")
def ort_profile(tmp_path_factory):
    """bert-tiny (batch 2, sequence 64) exported by torch.onnx, profiled by ONNX Runtime: 2 warm-up runs then 3."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("ort")
    loaded = profiler.load_model("bert-tiny", batch_size=2, seq_len=64)
    names = list(loaded.kwargs)
    with torch.no_grad():
        torch.onnx.export(loaded.module, (), str(folder / "bert.onnx"), kwargs=loaded.kwargs, input_names=names,
                          dynamo=False)
    so = ort.SessionOptions()
    so.enable_profiling, so.profile_file_prefix = True, str(folder / "ort")
    so.optimized_model_filepath, so.log_severity_level = str(folder / "optimized.onnx"), 3
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "bert.onnx"), so, providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in loaded.kwargs.items() if k in {i.name for i in session.get_inputs()}}
    for _ in range(5):
        session.run(None, feed)
    return session.end_profiling(), folder / "optimized.onnx"


def test_ort_ops_are_the_onnx_op_types_once_per_node_per_inference(ort_profile):
    import onnx

    path, optimized = ort_profile
    profile = rt.read_ort_profile(path, 3)
    ops = {o.name: o for o in profile.ops()}
    graph_ops = [n.op_type for n in onnx.load(str(optimized), load_external_data=False).graph.node]
    assert profile.inferences == 3 and {"MatMul", "FusedMatMul", "Softmax", "Gemm"} <= set(ops)
    assert {name: o.calls for name, o in ops.items()} == {t: graph_ops.count(t) for t in set(graph_ops)}
    node_ms = sum(o.exec_ms + o.trans_ms for o in ops.values())
    assert 0.2 * profile.run_ms < node_ms < profile.run_ms  # the nodes run inside the inference, one after another
    assert ops["Transpose"].category == "transfer" and ops["Transpose"].trans_ms > 0 and ops["Transpose"].exec_ms == 0
    assert ops["MatMul"].input_shapes and all(o.host_ms == o.total_ms == o.exec_ms + o.trans_ms for o in ops.values())


def test_warm_up_runs_in_the_file_are_left_out(ort_profile):
    path, _ = ort_profile
    three, five = rt.read_ort_profile(path, 3), rt.read_ort_profile(path, 5)
    assert five.inferences == 5 and {o.name: o.calls for o in five.ops()} == {o.name: o.calls for o in three.ops()}
    events = json.loads(open(path).read())
    assert rt.read_ort_profile(events, 3).run_ms == three.run_ms  # a parsed list reads as the file does


def test_the_graph_is_the_optimized_onnx_graph_with_measured_nodes(ort_profile):
    import onnx

    path, optimized = ort_profile
    profile = rt.read_ort_profile(path, 3)
    specs = rt.onnx_graph(optimized)
    rt.fill_weight_shapes(profile, specs)
    graph = rt.runtime_graph(profile, specs)
    nodes = {n.id: n for n in graph.nodes}
    g = onnx.load(str(optimized), load_external_data=False).graph
    assert graph.method == "onnxruntime" and len(graph.nodes) == len(g.node) + 3 + 1  # + 3 inputs, the output node
    assert all(i in nodes for n in graph.nodes for i in n.inputs)
    assert graph.timed_nodes == len(profile.nodes) and graph.exec_ms + graph.trans_ms == pytest.approx(
        sum(o.exec_ms + o.trans_ms for o in profile.ops()))
    # static shapes: ORT fuses the query's MatMul and bias into a Gemm over [batch x seq, hidden] (MatMulAddFusion)
    [query] = [n for n in graph.nodes if n.module == "bert.encoder.layer.0.attention.self.query"]
    assert query.op in ("Gemm", "MatMul") and np.prod(json.loads(query.output_shape)) == 2 * 64 * 128
    assert query.flops == 2 * 2 * 64 * 128 * 128  # the weight's shape is in the graph, not in ORT's profile
    assert [nodes[i].op for i in nodes["output"].inputs] == ["Gemm"]  # the classifier


def test_hand_made_profiles_warm_up_and_no_run_events():
    def node(ts, dur):
        return {"cat": "Node", "name": "/enc/fc/MatMul_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": "MatMul", "provider": "CPUExecutionProvider",
                         "input_type_shape": [{"float": [4, 8]}], "output_type_shape": [{"float": [4, 16]}]}}
    runs = [{"cat": "Session", "name": "model_run", "ts": t, "dur": 100} for t in (0, 200)]
    profile = rt.read_ort_profile(runs + [node(10, 50), node(210, 30)], 1)
    [fc] = profile.nodes
    assert (fc.ms, fc.calls, profile.run_ms) == (0.03, 1.0, 0.1)  # the first run was warm-up
    assert fc.flops == 2 * 4 * 16 * 8  # K from the activation when the weight's shape is not given
    [op] = rt.read_ort_profile([node(10, 50), node(210, 30)], 2).ops()  # no model_run events: all of it, halved
    assert (op.name, op.exec_ms, op.calls, op.flops, op.flops_known) == ("MatMul", 0.04, 1.0, 1024.0, True)
    assert rt.module_of("/enc/fc/MatMul") == "enc.fc" and rt.module_of("MatMul_3") == ""
    assert rt.module_of("/model/enc/MatMul/MatMulScaleFusion/", "model") == "enc"


def test_what_is_not_an_ort_profile_says_so(tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(TraceFormatError, match="no Node events"):
        rt.read_ort_profile(tmp_path / "empty.json", 1)
    with pytest.raises(TraceFormatError, match="not a readable ONNX Runtime profile"):
        rt.read_ort_profile(DATA / "cpu_only.pt.trace.json.gz", 1)  # gzip bytes, not JSON


def test_openvino_counters_and_runtime_graph():
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    x = ops.parameter([2, 8], np.float32, name="x")
    weight = ops.constant(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    y = ops.softmax(ops.matmul(x, weight, False, False), 1)
    compiled = ov.Core().compile_model(ov.Model([y], [x]), "CPU", {"PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": 1})
    request = compiled.create_infer_request()
    for _ in range(2):
        request.infer({"x": np.ones((2, 8), np.float32)})
    warm = request.get_profiling_info()  # the counter objects themselves, read by attribute
    for _ in range(3):
        request.infer({"x": np.ones((2, 8), np.float32)})
    specs, shapes = rt.openvino_graph(compiled.get_runtime_model())
    profile = rt.read_openvino_counters(request.get_profiling_info(), 5, shapes, warm, 2)
    assert profile.inferences == 3
    ops_ = {o.name: o for o in profile.ops()}
    assert ops_["FullyConnected"].calls == 1 and ops_["FullyConnected"].flops == 2 * 2 * 4 * 8
    assert "Parameter" not in ops_ and "Result" not in ops_  # not run: no time of their own
    graph = rt.runtime_graph(profile, specs)
    nodes = {n.id: n for n in graph.nodes}
    fc = next(n for n in graph.nodes if n.op == "FullyConnected")
    assert nodes[fc.inputs[0]].kind == "placeholder" and fc.output_shape == "[2, 4]" and graph.method == "openvino"
    assert any(n.kind == "output" for n in graph.nodes)
    with pytest.raises(TraceFormatError, match="PERF_COUNT"):
        rt.read_openvino_counters([], 0)


def test_openvino_counters_are_means_since_compiling_so_the_warm_up_is_taken_out():
    """The CPU plugin reports each layer's mean over every inference since compiling: a slow first run would
    otherwise stay in the figures (a CI run read 1.19x the wall time from them)."""
    counter = lambda ms: {"node_name": "fc", "node_type": "FullyConnected", "exec_type": "brgemm_avx2_FP32",
                          "real_time": datetime.timedelta(milliseconds=ms), "status": "Status.EXECUTED"}
    skipped = {**counter(0), "node_name": "c", "status": "Status.NOT_RUN"}
    # 2 warm-up runs (10 and 6 ms: mean 8), then 4 measured runs of 1 ms: mean since compiling (16 + 4) / 6
    profile = rt.read_openvino_counters([counter(20 / 6), skipped], 6, before=[counter(8)], runs_before=2)
    [node] = profile.nodes
    assert profile.inferences == 4 and node.ms == pytest.approx(1.0, abs=0.002) and node.calls == 1  # whole us
    assert rt.read_openvino_counters([counter(2)], 3).nodes[0].ms == pytest.approx(2.0)  # no warm-up: the mean
    with pytest.raises(TraceFormatError, match="PERF_COUNT"):
        rt.read_openvino_counters([counter(2)], 2, before=[counter(2)], runs_before=2)  # no measured run


def test_flop_formulas_from_shapes():
    assert rt.op_flops("Gemm", [[8, 768], [3072, 768]], [[8, 3072]]) == 2 * 8 * 3072 * 768  # transB
    assert rt.op_flops("Conv", [[1, 3, 32, 32], [16, 3, 3, 3]], [[1, 16, 32, 32]]) == 2 * 16 * 32 * 32 * 27
    assert rt.op_flops("Conv", [[1, 1, 32, 32, 8], [2, 1, 3, 3, 8, 8]], [[1, 2, 32, 32, 8]]) is None  # NCHWc
    assert rt.op_flops("QLinearMatMul", [[4, 8], [], [], [8, 16]], [[4, 16]]) == 2 * 4 * 16 * 8
    assert rt.op_flops("Attention", [[2, 16, 64], [64, 192]], [[2, 16, 64]]) == 2 * 2 * 16 * 64 * 192 + 4 * 2 * 16 * \
        16 * 64
    assert rt.op_flops("LayerNormalization", [[2, 16, 64]], [[2, 16, 64]]) == 0.0
    assert rt.op_flops("MatMul", [], []) is None and rt.op_flops("LSTM", [[1]], [[1]]) is None


def test_onnx_and_openvino_names_are_in_the_one_vocabulary():
    families = {n: oc.family(n) for n in ("MatMul", "FusedMatMul", "Gemm", "FullyConnected", "MatMulInteger",
                                          "DynamicQuantizeMatMul", "Conv", "Convolution", "Attention", "Softmax",
                                          "SkipLayerNormalization", "MVN", "Gather", "Transpose", "Reorder")}
    assert families == {"MatMul": "matmul", "FusedMatMul": "matmul", "Gemm": "matmul", "FullyConnected": "matmul",
                        "MatMulInteger": "matmul", "DynamicQuantizeMatMul": "matmul", "Conv": "convolution",
                        "Convolution": "convolution", "Attention": "attention", "Softmax": "attention",
                        "SkipLayerNormalization": "elementwise", "MVN": "elementwise", "Gather": "lookup",
                        "Transpose": "transfer", "Reorder": "transfer"}
    assert all(oc.is_int8(n) for n in ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeLinear"))
    assert not oc.is_int8("MatMul") and oc.matches("DynamicQuantizeLinear", oc.CONVERSIONS)
