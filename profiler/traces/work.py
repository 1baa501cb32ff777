"""The work of one operator call, from what was recorded of it: FLOPs and bytes moved per op name (formulas.py holds
the formulas and their conventions). One table for imported traces (Input Dims, Input type, Concrete Inputs) and live
runs (record_shapes): live FLOP counting (measure/flops.py) reads the matmul-class rows of the same table.

Which row holds the work: the innermost counted op of a call stack (aten::linear -> aten::addmm: addmm;
aten::convolution -> aten::cudnn_convolution: the cuDNN op), because that is where the kernel time sits.
"""
from __future__ import annotations

from collections.abc import Callable

from profiler import op_categories as oc
from profiler.traces import formulas as f
from profiler.traces.formulas import Call, Work, numel  # noqa: F401 - re-exported for callers

Formula = Callable[[Call], "Work | None"]

Shapes = list  # recorded input shapes of one event, one list per argument ([] for non-tensors)


def _bshd(causal_at: int, backward: bool = False, q: int = 0, mask_type: bool = False) -> Formula:
    def formula(c: Call) -> Work | None:
        causal = (c.ints(causal_at) or [0])[0] in (1, 2) if mask_type else c.flag(causal_at)
        return f.attention(c, "bshd", causal, q, q + 1, q + 2, backward)
    return formula


def _bhsd(causal_at: int | None, backward: bool = False, q: int = 0) -> Formula:
    return lambda c: f.attention(c, "bhsd", causal_at is not None and c.flag(causal_at), q, q + 1, q + 2, backward)


GEMM: dict[str, Formula] = {
    "aten::mm": lambda c: f.mm(c),
    "aten::addmm": lambda c: f.mm(c, 1, 2, bias=True),
    "aten::bmm": lambda c: f.bmm(c),
    "aten::baddbmm": lambda c: f.bmm(c, 1, 2, bias=True),
    "aten::matmul": f.matmul,
    "aten::linear": f.linear,
    "aten::_int_mm": lambda c: f.mm(c),
    "aten::_scaled_mm": f.scaled_mm,
    "aten::_weight_int8pack_mm": lambda c: f.linear(c),  # weight [N, K]
    "aten::mkldnn_linear": f.linear,
    "mkldnn::_linear_pointwise": f.linear,
    "mkl::_mkl_linear": lambda c: f.linear(Call([c.dims[0], c.dims[2]], c.types[:1])) if len(c.dims) > 2 else None,
    "onednn::qlinear_pointwise": lambda c: _packed_linear(c),
}
CONV: dict[str, Formula] = {
    # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    "aten::convolution": lambda c: f.conv(c, 3, 4, 5, 8, 2, 6, 7),
    "aten::_convolution": lambda c: f.conv(c, 3, 4, 5, 8, 2, 6, 7),
    "aten::conv1d": lambda c: f.conv(c, 3, 4, 5, 6),
    "aten::conv2d": lambda c: f.conv(c, 3, 4, 5, 6),
    "aten::conv3d": lambda c: f.conv(c, 3, 4, 5, 6),
    # (self, weight, padding, stride, dilation, groups, ...): no bias argument
    "aten::cudnn_convolution": lambda c: f.conv(c, 3, 2, 4, 5, None),
    # (self, weight, bias, padding, stride, dilation, groups, ...)
    "aten::miopen_convolution": lambda c: f.conv(c, 4, 3, 5, 6),
    "aten::mkldnn_convolution": lambda c: f.conv(c, 4, 3, 5, 6),
    # (self, weight, kernel_size, bias, stride, padding)
    "aten::_slow_conv2d_forward": lambda c: f.conv(c, 4, 5, None, None, 3),
    "aten::thnn_conv2d": lambda c: f.conv(c, 4, 5, None, None, 3),
    "aten::convolution_backward": f.conv_backward,
    # 2021-era cuDNN / MIOpen backward: (input, grad_output, weight, padding, stride, dilation, groups, ..., mask)
    "aten::cudnn_convolution_backward": lambda c: f.conv_backward(c, 1, 0, 2, 6, None, 10),
    "aten::miopen_convolution_backward": lambda c: f.conv_backward(c, 1, 0, 2, 6, None, 9),
    # their halves: (self_size, grad_output, weight, ...) and (weight_size, grad_output, self, ...), sizes as ints
    "aten::cudnn_convolution_backward_input": lambda c: f.conv_grad(c, weight=False),
    "aten::miopen_convolution_backward_input": lambda c: f.conv_grad(c, weight=False),
    "aten::cudnn_convolution_backward_weight": lambda c: f.conv_grad(c, weight=True),
    "aten::miopen_convolution_backward_weight": lambda c: f.conv_grad(c, weight=True),
}
# where a convolution backward records (grad_output, input, weight): the forward with the same input and weight
# shapes had that output (its stride and padding may not be recorded)
CONV_BACKWARD_ARGS = {"aten::convolution_backward": (0, 1, 2), "aten::cudnn_convolution_backward": (1, 0, 2),
                      "aten::miopen_convolution_backward": (1, 0, 2)}
CONV_GRAD = frozenset(oc.CONVOLUTION_GRAD_HALVES)
CONV_FORWARD = frozenset(oc.CONVOLUTION_FORWARD)
POOL_FORWARD = frozenset(oc.MAX_POOL)
POOL_BACKWARD = frozenset(f"{n}_backward" for n in oc.MAX_POOL)
ATTENTION: dict[str, Formula] = {
    "aten::scaled_dot_product_attention": _bhsd(5),
    "aten::_scaled_dot_product_flash_attention": _bhsd(4),
    "aten::_scaled_dot_product_flash_attention_for_cpu": _bhsd(4),
    "aten::_scaled_dot_product_efficient_attention": _bhsd(6),
    "aten::_scaled_dot_product_cudnn_attention": _bhsd(6),
    "aten::_scaled_dot_product_fused_attention_overrideable": _bhsd(5),
    "aten::_flash_attention_forward": _bshd(8),
    "aten::_efficient_attention_forward": _bshd(9, mask_type=True),
    "aten::_scaled_dot_product_flash_attention_backward": _bhsd(11, backward=True, q=1),
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": _bhsd(7, backward=True, q=1),
    "aten::_scaled_dot_product_efficient_attention_backward": _bhsd(11, backward=True, q=1),
    "aten::_scaled_dot_product_cudnn_attention_backward": _bhsd(14, backward=True, q=1),
    "aten::_flash_attention_backward": _bshd(11, backward=True, q=1),
    "aten::_efficient_attention_backward": _bshd(14, backward=True, q=1, mask_type=True),
}
_UNARY = ("gelu", "relu", "relu_", "silu", "silu_", "sigmoid", "tanh", "exp", "neg", "abs", "sqrt", "rsqrt", "log",
          "erf", "sin", "cos", "reciprocal", "hardtanh", "hardswish", "leaky_relu", "elu", "clamp", "clamp_", "pow",
          "gelu_backward", "threshold_backward", "silu_backward", "sigmoid_backward", "tanh_backward", "dropout",
          "native_dropout", "masked_fill", "masked_fill_", "where", "bitwise_not", "logical_not", "nan_to_num",
          "nan_to_num_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "threshold", "threshold_",
          "hardsigmoid", "softplus", "mish", "native_dropout_backward", "leaky_relu_backward", "hardswish_backward")
_BINARY = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", "eq", "ne", "lt", "le",
           "gt", "ge", "rsub", "addcmul_", "addcdiv_", "lerp_", "bitwise_and", "logical_and", "remainder", "fmod")
_REDUCE = ("sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "all", "any", "prod", "norm",
           "linalg_vector_norm", "std", "var", "cumsum", "logsumexp", "topk", "sort")
_FOREACH = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "sqrt", "sqrt_", "neg", "neg_", "copy_",
            "zero_", "maximum_", "clamp_min_", "clamp_max_", "abs", "abs_", "exp", "exp_", "reciprocal_", "sign",
            "norm", "pow", "pow_")
MEMORY: dict[str, Formula] = {
    **{f"aten::{n}": f.elementwise for n in _UNARY + _BINARY},
    **{f"aten::{n}": f.reduction for n in _REDUCE},
    "aten::_softmax": f.softmax, "aten::softmax": f.softmax, "aten::_log_softmax": f.softmax,
    "aten::log_softmax": f.softmax, "aten::_softmax_backward_data": f.softmax,
    "aten::_log_softmax_backward_data": f.softmax,
    "aten::max_pool2d_with_indices": f.max_pool, "aten::max_pool3d_with_indices": f.max_pool,
    "aten::max_pool2d_with_indices_backward": f.max_pool_backward,
    "aten::max_pool3d_with_indices_backward": f.max_pool_backward,
    "aten::nll_loss_forward": f.nll_loss, "aten::nll_loss_backward": lambda c: f.nll_loss(c, backward=True),
    "aten::native_layer_norm": lambda c: f.norm(c, affine=(2, 3)),
    "aten::layer_norm": lambda c: f.norm(c, affine=(2, 3)),
    "aten::native_layer_norm_backward": lambda c: f.norm(c, affine=(5, 6), extra_inputs=(1,)),
    "aten::_fused_rms_norm": lambda c: f.norm(c, affine=(2,), per_element=4.0),
    "aten::rms_norm": lambda c: f.norm(c, affine=(2,), per_element=4.0),
    "aten::native_batch_norm": lambda c: f.norm(c, affine=(1, 2, 3, 4)),
    "aten::cudnn_batch_norm": lambda c: f.norm(c, affine=(1, 2, 3, 4)),
    "aten::_native_batch_norm_legit_no_training": lambda c: f.norm(c, affine=(1, 2, 3, 4)),
    "aten::native_group_norm": lambda c: f.norm(c, affine=(1, 2)),
    # (input, grad_output, weight, ...): read input and gradient, write the input gradient
    "aten::native_batch_norm_backward": lambda c: f.norm(c, affine=(2,), extra_inputs=(1,)),
    "aten::cudnn_batch_norm_backward": lambda c: f.norm(c, affine=(2,), extra_inputs=(1,)),
    # vLLM / SGLang fused kernels' parent ops (x, residual, weight): the residual is read and written too
    "_C::rms_norm": lambda c: f.norm(Call(c.dims[1:], c.types[1:]), affine=(1,), per_element=4.0),
    "_C::fused_add_rms_norm": lambda c: f.norm(c, affine=(2,), per_element=5.0, extra_inputs=(1,)),
    "_C::silu_and_mul": lambda c: _silu_and_mul(c),
    "aten::copy_": f.copy, "aten::_to_copy": lambda c: f.copy(c, src=0, dst=0), "aten::clone": lambda c: f.copy(c, 0),
    "aten::contiguous": lambda c: f.copy(c, 0), "aten::fill_": f.write, "aten::zero_": f.write,
    "aten::embedding": lambda c: f.gather(c, 0, 1), "aten::index_select": lambda c: f.gather(c, 0, 2),
    "aten::cat": f.concat,
    # optimizers: Adam(W) reads parameter, gradient and both moments and writes three back, ~15 FLOPs of update per
    # element (moments, bias corrections, sqrt, division, decay); SGD with momentum reads three and writes two
    "aten::_fused_adam_": lambda c: f.fused_optimizer(c, 4, 3, 15.0),
    "aten::_fused_adamw_": lambda c: f.fused_optimizer(c, 4, 3, 15.0),
    "aten::_fused_sgd_": lambda c: f.fused_optimizer(c, 3, 2, 4.0),
    **{f"aten::_foreach_{n}": f.foreach for n in _FOREACH},
    **{f"aten::_foreach_{n}": lambda c: f.foreach(c, 2.0) for n in ("addcmul", "addcmul_", "addcdiv", "addcdiv_",
                                                                   "lerp", "lerp_")},
    # FBGEMM (recommendation models): row-wise (de)quantization and permutations of sparse features and embeddings
    "fbgemm::FloatToFP8RowwiseQuantized": lambda c: f.convert(c, 1, 8, 2.0),
    "fbgemm::FloatToFused8BitRowwiseQuantized": lambda c: f.convert(c, 1, 8, 2.0),
    "fbgemm::FP8RowwiseQuantizedToFloat": lambda c: f.convert(c, 4, -8),
    "fbgemm::Fused8BitRowwiseQuantizedToFloat": lambda c: f.convert(c, 4, -8),
    "fbgemm::FloatToHFP8Quantized": lambda c: f.convert(c, 1),
    "fbgemm::HFP8QuantizedToFloat": lambda c: f.convert(c, 4),
    "fbgemm::permute_sparse_features": lambda c: f.permute(c, 1, 2, 3),
    "fbgemm::permute_2D_sparse_data": lambda c: f.permute(c, 1, 2, 3),
    "fbgemm::permute_1D_sparse_data": lambda c: f.permute(c, 1, 2, 3),
    "fbgemm::permute_pooled_embs": lambda c: f.permute(c, 0),
    "fbgemm::permute_pooled_embs_auto_grad": lambda c: f.permute(c, 0),
    "fbgemm::recat_embedding_grad_output_mixed_D_batch": lambda c: f.permute(c, 0),
}
TABLE: dict[str, Formula] = {**GEMM, **CONV, **ATTENTION, **MEMORY}
MATMUL_CLASS = {**GEMM, **CONV, **ATTENTION}  # the ops live FLOP counting reads (element-wise FLOPs are not counted)


def _packed_linear(c: Call) -> Work | None:
    """onednn::qlinear_pointwise(x, scale, zp, packed weight [K, N] or [N, K], ...)."""
    x, w = c.shape(0), c.shape(3)
    if not x or not w or len(w) != 2:
        return None
    n = w[1] if w[0] == x[-1] else w[0]
    return f.gemm(numel(x) // x[-1], n, x[-1], False, c.bpe(0))


def _silu_and_mul(c: Call) -> Work | None:
    """_C::silu_and_mul(out [T, d], x [T, 2d]): 2 FLOPs-ish per output element; read x, write out."""
    out, x = c.shape(0), c.shape(1)
    if not out or not x:
        return None
    bpe = c.bpe(1)
    return Work(2.0 * numel(out), None if bpe is None else (numel(x) + numel(out)) * bpe, "elementwise",
                f"out={out}")


def of_call(name: str, call: Call, from_backward: dict[tuple, list[int] | None] | None = None) -> Work | None:
    """The work of one call of `name`, or None when no formula knows it or its recorded arguments do not say.
    `from_backward` (backward_shapes()): a forward convolution's or max pool's output size where its stride and
    padding are missing."""
    formula = TABLE.get(name)
    if formula is None:
        return None
    try:
        work = formula(call)
        if work is None and from_backward:
            work = _from_backward(name, call, from_backward)
        return work
    except (IndexError, ValueError, TypeError, ZeroDivisionError):  # a recorded argument of an unexpected form
        return None


def _from_backward(name: str, call: Call, shapes: dict[tuple, list[int] | None]) -> Work | None:
    """A forward convolution or max pool without its stride and padding: the output size its backward recorded."""
    a, b = call.shape(0), call.shape(1)
    if name in POOL_FORWARD and a:
        out = shapes.get(("pool", tuple(a)))
        return f.max_pool(call, out) if out else None
    if name in CONV_FORWARD and a and b:
        out = shapes.get((tuple(a), tuple(b)))
        return f.conv_with_output(call, out) if out else None
    return None


def backward_shapes(calls: list[tuple[str, Call]]) -> dict[tuple, list[int] | None]:
    """Each forward's output spatial size, from the backwards among `calls`, which record their gradient whole: a
    training trace recorded without concrete arguments (2021-era) still says it there. Keys: (input shape, weight
    shape) for a convolution, ("pool", input shape) for a max pool. None where two backwards disagree (same shapes,
    another stride)."""
    out: dict[tuple, list[int] | None] = {}
    for name, call in calls:
        if name in POOL_BACKWARD and call.shape(0) and call.shape(1):  # (grad_output, self, ...)
            key, go = ("pool", tuple(call.shape(1))), call.shape(0)[2:]
            out[key] = go if out.get(key, go) == go else None
        args = CONV_BACKWARD_ARGS.get(name)
        if args is not None:
            go, x, w = (call.shape(i) for i in args)
            if go and x and w and len(go) == len(x) == len(w) > 2:
                key = (tuple(x), tuple(w))
                out[key] = go[2:] if out.get(key, go[2:]) == go[2:] else None
    return out


def conv_grad_from_parent(name: str, call: Call, parent_name: str, parent: Call) -> Work | None:
    """A 2021-era backward half (cudnn_convolution_backward_input / _weight) whose size argument was not recorded,
    from the backward op it runs inside, which records input, grad_output and weight whole."""
    args = CONV_BACKWARD_ARGS.get(parent_name)
    if name not in CONV_GRAD or args is None:
        return None
    go, x, w = (parent.shape(i) for i in args)
    weight = name.endswith("_weight")
    size = w if weight else x
    return f.conv_grad(call, weight, size) if size else None


def _flops_only(name: str) -> Callable[[Shapes, list | None], int | None]:
    def formula(shapes: Shapes, concrete: list | None = None) -> int | None:
        w = of_call(name, Call(dims=shapes, concrete=list(concrete or [])))
        return None if w is None else int(w.flops)
    return formula


# profiler event name -> FLOPs from the event's recorded input shapes (and concrete arguments, when recorded); None
# means the recorded arguments do not say (the dispatcher's count is used instead)
EVENT_FORMULAS: dict[str, Callable[..., int | None]] = {name: _flops_only(name) for name in MATMUL_CLASS}
