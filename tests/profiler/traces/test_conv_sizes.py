"""Convolutions in a trace recorded without concrete arguments (the TensorBoard plugin's 2021 ResNet-50 training
sample): stride and padding are missing, so a forward's output size comes from its own backward, and the backward's
two halves (cudnn_convolution_backward_input / _weight, whose size argument is an unrecorded int list) are sized from
the backward op each runs inside. Checked against hand counts of ResNet-50's layers."""
import pytest
from testdata import DATA

from profiler.traces import work
from profiler.traces.formulas import Call
from profiler.traces.importer import import_trace

STEPS, BATCH = 6, 32


def resnet50_conv_macs() -> int:
    """Multiply-accumulates of ResNet-50's 53 convolutions for one 224x224 image, layer by layer (torchvision's v1.5:
    the stride sits on each bottleneck's 3x3)."""
    macs = 112 * 112 * 64 * 3 * 7 * 7  # the stem
    cin, res = 64, 56
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for b in range(blocks):
            out = res // 2 if stage > 0 and b == 0 else res
            macs += res * res * width * cin  # 1x1 reduce
            macs += out * out * width * width * 9  # 3x3
            macs += out * out * 4 * width * width  # 1x1 expand
            if b == 0:
                macs += out * out * 4 * width * cin  # the downsample's 1x1
            cin, res = 4 * width, out
    return macs


CONV_MACS = resnet50_conv_macs()
CONV1_FLOPS = 2 * BATCH * 64 * 112 * 112 * 3 * 7 * 7  # the 7x7 stem, whose input needs no gradient


@pytest.fixture(scope="module")
def run():
    return import_trace(DATA / "resnet50_train_gpu.pt.trace.json.gz")


def test_every_convolution_of_a_2021_training_trace_is_counted(run):
    ops = {o.name: o for o in run.ops}
    forward = ops["aten::cudnn_convolution"]
    assert forward.calls == 53 * STEPS and forward.flops_known
    assert forward.flops == pytest.approx(STEPS * BATCH * 2 * CONV_MACS, rel=1e-6)
    # the weight gradient costs the forward; the input gradient too, except for the stem's (its input is the image)
    assert ops["aten::cudnn_convolution_backward_weight"].flops == pytest.approx(forward.flops, rel=1e-9)
    assert ops["aten::cudnn_convolution_backward_input"].flops == pytest.approx(
        forward.flops - STEPS * CONV1_FLOPS, rel=1e-9)
    assert ops["aten::cudnn_convolution_backward"].flops == 0  # the wrapper: its work sits on its two halves
    assert run.totals.flop_coverage > 0.999  # was 0.32 with the convolutions unexplained
    pool = next(s for s in run.shapes if s.op == "aten::max_pool2d_with_indices")  # its output size from its backward
    assert "out=[32, 64, 56, 56]" in pool.params and pool.bytes == 4 * 32 * 64 * 112 * 112 + 12 * 32 * 64 * 56 * 56


def test_one_signature_standing_for_two_layers_is_sized_per_call(run):
    """layer1's 1x1 and 3x3 convolutions at 64 channels both take [32, 64, 56, 56] and give [32, 64, 56, 56]: their
    weight gradients share a signature, so each call is sized from its own backward op."""
    rows = [s for s in run.shapes if s.op == "aten::cudnn_convolution_backward_weight"
            and s.shape == "[[32, 64, 56, 56], [32, 64, 56, 56]]"]
    assert len(rows) == 1 and rows[0].params.startswith("sizes differ per call")
    one_by_one, three_by_three = (2 * BATCH * 64 * 56 * 56 * 64 * k for k in (1, 9))
    per_step = rows[0].calls / STEPS  # 1 of the first kind (block 1's conv1) and 3 of the second per step
    assert per_step == 4 and rows[0].flops == pytest.approx((one_by_one + 3 * three_by_three) / 4, rel=1e-9)


def test_a_forward_whose_backwards_disagree_stays_unknown():
    """Same input and weight shapes, two output sizes (stride 1 and 2): no guess."""
    x, w = [8, 16, 32, 32], [16, 16, 3, 3]
    back = lambda out: ("aten::convolution_backward", Call(dims=[[8, 16, out, out], x, w]))  # noqa: E731
    forward = Call(dims=[x, w, [], [], [], []], types=["float", "float"])
    one = work.backward_shapes([back(32)])
    assert work.of_call("aten::conv2d", forward, one).flops == 2 * 8 * 16 * 32 * 32 * 16 * 9
    assert work.of_call("aten::conv2d", forward, work.backward_shapes([back(32), back(16)])) is None
    assert work.of_call("aten::conv2d", forward) is None  # and none without a backward


@pytest.mark.parametrize("name", ["sampled_rank0_gpu", "test_v100"])
def test_recommendation_model_traces_are_mostly_explained(name):
    """HTA's DLRM-style training traces: with FBGEMM's row-wise quantization and permutations counted, above 80%
    of compute kernel time holds known work; what is left is named (TBE lookups and cat record no sizes)."""
    run = import_trace(DATA / f"{name}.pt.trace.json.gz")
    assert run.totals.flop_coverage > 0.8
    unknown = {o.name for o in run.ops if not o.flops_known and o.exec_ms > 1}
    assert "fbgemm::split_embedding_codegen_lookup_rowwise_adagrad_function" in unknown
    assert not {n for n in unknown if "permute" in n and not n.startswith("torch::autograd")}


def test_a_multi_step_trace_is_floored_against_its_own_wall_time(run):
    """Op figures of an imported trace are totals over its 6 steps: the floor at peak is compared with the trace's
    wall time, not with one step's median (which read as a floor 2.4x above the measured time)."""
    from profiler import devices
    from profiler.analysis import roofline

    peaks = devices.spec_peaks(run.device.name)
    roof = roofline.roofline(run, peaks)
    assert roof.measured_what == "wall time of the trace (6 steps)" and roof.measured_ms == run.totals.wall_ms
    assert 0 < roof.floor_ms < roof.measured_ms
    # the convolutions' floor alone, by hand: their FLOPs at the V100's fp32 peak
    conv = sum(o.flops for o in run.ops if "convolution" in o.name)
    assert roof.floor_ms > conv / (peaks.fp32_gflops * 1e9) * 1e3
