"""The work formulas against torch's own FLOP counter and output shapes, for the argument forms traces record."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from profiler.traces import work
from profiler.traces.formulas import Call


def counted(fn) -> int:
    with FlopCounterMode(display=False) as mode:
        fn()
    return mode.get_total_flops()


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (2, 3, 2, 1), (1, 1, 1, 4)])
def test_convolution_matches_torch(stride, padding, dilation, groups):
    x, w = torch.randn(2, 8, 17, 23), torch.randn(16, 8 // groups, 3, 5)
    out = F.conv2d(x, w, None, stride, padding, dilation, groups)
    call = Call(dims=[list(x.shape), list(w.shape), [], [], [], [], [], [], []],
                types=["float", "float"], concrete=["", "", "", f"[{stride}, {stride}]", f"[{padding}, {padding}]",
                                                     f"[{dilation}, {dilation}]", "False", "[0, 0]", str(groups)])
    got = work.of_call("aten::convolution", call)
    assert got.flops == counted(lambda: F.conv2d(x, w, None, stride, padding, dilation, groups))
    assert got.bytes == 4 * (x.numel() + w.numel() + out.numel())
    # cuDNN's entry point has padding before stride and no bias: the same answer from its own argument order
    cudnn = Call(dims=[list(x.shape), list(w.shape)], types=["c10::BFloat16"] * 2,
                 concrete=["", "", f"[{padding}, {padding}]", f"[{stride}, {stride}]", f"[{dilation}, {dilation}]",
                           str(groups)])
    assert work.of_call("aten::cudnn_convolution", cudnn).flops == got.flops


def test_transposed_convolution_and_backward_match_torch():
    x, w = torch.randn(2, 8, 9, 9), torch.randn(8, 4, 3, 3)
    call = Call(dims=[list(x.shape), list(w.shape), [], [], [], [], [], [], []], types=["float"] * 2,
                concrete=["", "", "", "[2, 2]", "[1, 1]", "[1, 1]", "True", "[1, 1]", "1"])
    assert work.of_call("aten::convolution", call).flops == counted(
        lambda: F.conv_transpose2d(x, w, None, 2, 1, 1))
    xi = torch.randn(2, 8, 16, 16, requires_grad=True)
    wi = torch.randn(16, 8, 3, 3, requires_grad=True)
    out = F.conv2d(xi, wi, None, 1, 1)
    back = Call(dims=[list(out.shape), list(xi.shape), list(wi.shape)], types=["float"] * 3,
                concrete=["", "", "", "[16]", "[1, 1]", "[1, 1]", "[1, 1]", "False", "[0, 0]", "1",
                          "[True, True, False]"])
    fwd = counted(lambda: F.conv2d(xi, wi, None, 1, 1))
    assert work.of_call("aten::convolution_backward", back).flops == 2 * fwd


def test_a_2021_trace_without_concrete_arguments_is_unknown_not_zero():
    call = Call(dims=[[32, 3, 224, 224], [64, 3, 7, 7], [], [], [], [], [], [], []])
    assert work.of_call("aten::convolution", call) is None


def test_gemms_and_attention_match_torch():
    a, b, bias = torch.randn(13, 40), torch.randn(40, 7), torch.randn(7)
    assert work.of_call("aten::addmm", Call([[7], [13, 40], [40, 7]], ["float"] * 3)).flops == counted(
        lambda: torch.addmm(bias, a, b))
    x, wt = torch.randn(2, 5, 40), torch.randn(7, 40)
    lin = work.of_call("aten::linear", Call([[2, 5, 40], [7, 40], [7]], ["c10::BFloat16"] * 3))
    assert lin.flops == counted(lambda: F.linear(x, wt)) and lin.bytes == 2 * (10 * 40 + 40 * 7 + 10 * 7 + 7)
    q, k = torch.randn(2, 8, 33, 16), torch.randn(2, 8, 47, 16)
    sdpa = work.of_call("aten::_scaled_dot_product_flash_attention",
                        Call([list(q.shape), list(k.shape), list(k.shape)], ["c10::Half"] * 3,
                             ["", "", "", "0.", "False"]))
    assert sdpa.flops == 2 * 2 * 8 * 33 * 47 * (16 + 16)  # torch's counter skips CPU attention: its formula by hand
    causal = work.of_call("aten::_flash_attention_forward",  # [batch, seq, heads, dim]
                          Call([[2, 64, 8, 16], [2, 64, 2, 16], [2, 64, 2, 16]], ["c10::BFloat16"] * 3,
                               ["", "", "", "", "", "", "", "0.", "True"]))
    assert causal.flops == 2 * 8 * 2 * 64 * 64 * 32 / 2  # halved by the mask; 2 key/value heads do not change it
    assert causal.bytes == 2 * 2 * 64 * (8 * 16 + 2 * 16 + 2 * 16 + 8 * 16)  # grouped k, v at their own heads


def test_memory_bound_families():
    add = work.of_call("aten::add", Call([[4, 1, 8], [3, 8], []], ["c10::BFloat16", "c10::BFloat16", "Scalar"]))
    assert add.flops == 4 * 3 * 8 and add.bytes == 2 * (32 + 24 + 96)  # broadcast output
    cast = work.of_call("aten::copy_", Call([[10, 10], [10, 10]], ["c10::BFloat16", "float"]))
    assert cast.flops == 0 and cast.bytes == 100 * 2 + 100 * 4
    emb = work.of_call("aten::index_select", Call([[30522, 512], [], [141]], ["c10::BFloat16", "Scalar", "long int"]))
    assert emb.bytes == 2 * 141 * 512 * 2 + 141 * 8
    assert work.of_call("aten::not_an_op", Call([[1]], ["float"])) is None


def test_fbgemm_data_movement_from_the_recorded_shapes():
    """FBGEMM's row-wise (de)quantization and permutations, as HTA's recommendation-model traces record them."""
    q = work.of_call("fbgemm::FloatToFP8RowwiseQuantized", Call([[1492704, 256], []], ["float", "Scalar"]))
    assert q.bytes == 1492704 * 256 * 4 + 1492704 * (256 + 8) and q.flops == 2 * 1492704 * 256  # fp8 + 8-byte scale
    dq = work.of_call("fbgemm::FP8RowwiseQuantizedToFloat", Call([[1638400, 264], []], ["unsigned char", "Scalar"]))
    assert dq.bytes == 1638400 * 264 + 1638400 * 256 * 4 and dq.flops == 1638400 * 256
    p = work.of_call("fbgemm::permute_sparse_features", Call([[300], [300, 2048], [16334339], []],
                                                               ["int", "int", "int", ""]))
    assert p.flops == 0 and p.bytes == 2 * 4 * (300 * 2048 + 16334339)
    assert work.of_call("fbgemm::permute_pooled_embs_auto_grad", Call(
        [[2048, 186588], [1391], [1390], [1391], [1390]], ["float", "long", "long", "long", "long"])).bytes == \
        2 * 4 * 2048 * 186588
    assert work.of_call("fbgemm::FloatToHFP8Quantized", Call([[], []], ["float"])) is None  # no shape: unknown


def test_optimizer_tensor_lists_and_the_loss():
    """The optimizer's multi-tensor and fused kernels, recorded as tensor lists (shapes, no dtype: fp32 assumed and
    said), and the loss: a training trace's step is explained, not only its forward and backward."""
    params = [[512, 256], [512], [10, 512], [10]]
    n = 512 * 256 + 512 + 10 * 512 + 10
    adamw = work.of_call("aten::_fused_adamw_", Call([params, params, params, params, [], [[]] * 4],
                                                      ["TensorList"] * 6))
    assert adamw.flops == 15 * n and adamw.bytes == 7 * 4 * n and "fp32 assumed" in adamw.params
    add = work.of_call("aten::_foreach_add_", Call([params, params, []], ["TensorList", "TensorList", "Scalar"]))
    assert add.flops == n and add.bytes == 3 * 4 * n  # two lists read, the first written
    steps = work.of_call("aten::_foreach_add_", Call([[[]] * 4, [], []], ["TensorList", "float", "Scalar"]))
    assert steps.flops == 4  # four 0-dim step counters
    assert work.of_call("aten::add_", Call([[], [], []], ["float", "Scalar", "Scalar"])).flops == 1
    nll = work.of_call("aten::nll_loss_forward", Call([[64, 10], [64], [], [], []], ["float", "long int"]))
    assert nll.flops == 64 and nll.bytes == 64 * 4 + 64 * 8 + 4
    x = torch.randn(64, 10).log_softmax(1)
    assert work.of_call("aten::_log_softmax_backward_data", Call([[64, 10], [64, 10], [], []], ["float", "float"])) \
        .flops == 3 * x.numel()


@pytest.mark.parametrize("optimizer", ["adamw-fused", "adamw-foreach", "sgd-foreach"])
def test_a_recorded_training_step_is_explained(tmp_path, optimizer):
    """torch.profiler's own trace of a few training steps (record_shapes), imported: the optimizer's kernels hold
    known work and nearly all operator time is explained."""
    from torch import nn
    from torch.profiler import ProfilerActivity, profile

    from profiler.traces.importer import import_trace

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.LayerNorm(512), nn.Linear(512, 10))
    kind, variant = optimizer.split("-")
    opt = (torch.optim.AdamW(m.parameters(), **{variant: True}) if kind == "adamw" else
           torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, foreach=True))
    x, y = torch.randn(64, 256), torch.randint(0, 10, (64,))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
        for _ in range(3):
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    p.export_chrome_trace(str(tmp_path / "train.json"))
    run = import_trace(tmp_path / "train.json")
    ops = {o.name: o for o in run.ops}
    steps = [o for name, o in ops.items() if name.startswith(("aten::_fused_", "aten::_foreach_"))]
    assert steps and all(o.flops_known for o in steps), [(o.name, o.flops_known) for o in steps]
    if kind == "adamw" and variant == "fused":  # one kernel: its work is its own (a CPU foreach runs per-tensor ops)
        assert ops["aten::_fused_adamw_"].flops == 3 * 15 * sum(p.numel() for p in m.parameters())
    assert run.totals.flop_coverage > 0.9, run.totals.flop_coverage


def test_an_out_argument_is_written_not_read():
    """clamp_min.out(self, min, out) as a 2021 ResNet-50 trace records it: after the scalar, the tensor is where the
    result goes, so the op moves the input once and the output once (counting it as a second input put ReLU at 138%
    of the V100's memory roof)."""
    n = 32 * 64 * 56 * 56
    w = work.of_call("aten::clamp_min", Call([[32, 64, 56, 56], [], [32, 64, 56, 56]], ["float", "Int", "float"]))
    assert w.flops == n and w.bytes == 2 * 4 * n
    add = work.of_call("aten::add", Call([[32, 64, 56, 56], [32, 64, 56, 56], []], ["float", "float", "Scalar"]))
    assert add.bytes == 3 * 4 * n  # two inputs read, one output written


@pytest.mark.parametrize("kernel,stride,padding,ceil", [(3, 2, 1, False), (2, 2, 0, True), (3, 1, 0, False)])
def test_max_pool_matches_torch(kernel, stride, padding, ceil):
    x = torch.randn(2, 4, 15, 17)
    out, idx = F.max_pool2d(x, kernel, stride, padding, 1, ceil, return_indices=True)
    call = Call([list(x.shape)] + [[]] * 5, ["float", "GenericList", "GenericList", "GenericList", "GenericList",
                                             "Bool"], ["", f"[{kernel}, {kernel}]", f"[{stride}, {stride}]",
                                                       f"[{padding}, {padding}]", "[1, 1]", str(ceil)])
    w = work.of_call("aten::max_pool2d_with_indices", call)
    assert w.params.endswith(str(list(out.shape))) and w.flops == out.numel() * kernel * kernel
    assert w.bytes == 4 * x.numel() + (4 + 8) * out.numel()  # the input read, values and int64 indices written
    back = work.of_call("aten::max_pool2d_with_indices_backward",
                        Call([list(out.shape), list(x.shape)] + [[]] * 5 + [list(idx.shape)], ["float", "float"]))
    assert back.bytes == (4 + 8) * out.numel() + 4 * x.numel()
