"""The work of one operator call from its recorded input shapes (a trace's `Input Dims`, a live run's record_shapes):
FLOPs by the convention of torch.utils.flop_counter and fvcore (matmuls, convolutions and attention, 2 per
multiply-accumulate; int8 kernels the same). Pure functions over shapes, with no torch: imported traces and live
runs (measure/flops.py) count with the same table.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from profiler import op_categories as oc

Shapes = list  # recorded input shapes of one event, one list per argument ([] for non-tensors)


def numel(shape) -> int:
    return math.prod(int(d) for d in shape) if shape else 0


def linear(x, n_out: int) -> int:
    return 2 * numel(x) * int(n_out)  # numel(x) = M*K, times N outputs


def packed_n(x, w) -> int:
    """Output features of a prepacked int8 weight, stored [K, N] by oneDNN (or [N, K])."""
    return w[1] if w[0] == x[-1] and len(w) > 1 else w[0]


def shaped(fn: Callable[..., int | None], *need: int) -> Callable[[Shapes], int | None]:
    """A formula that returns None (uncountable from shapes) when an argument it reads has no recorded shape."""
    def formula(s: Shapes) -> int | None:
        return fn(s) if len(s) > max(need) and all(s[i] for i in need) else None
    return formula


# profiler event name -> FLOPs from the event's recorded input shapes; None means the shapes do not say (the
# dispatcher count is used instead). Wrappers (aten::linear, aten::matmul) are not here: their work shows in the
# kernels they call.
EVENT_FORMULAS: dict[str, Callable[[Shapes], int | None]] = {
    "aten::mm": shaped(lambda s: mm(s[0], s[1]), 0, 1),
    "aten::addmm": shaped(lambda s: mm(s[1], s[2]), 1, 2),
    "aten::bmm": shaped(lambda s: bmm(s[0], s[1]), 0, 1),
    "aten::baddbmm": shaped(lambda s: bmm(s[1], s[2]), 1, 2),
    "aten::_int_mm": shaped(lambda s: mm(s[0], s[1]), 0, 1),
    "aten::_weight_int8pack_mm": shaped(lambda s: linear(s[0], s[1][0]), 0, 1),  # weight [N, K]
    "aten::mkldnn_linear": shaped(lambda s: linear(s[0], s[1][0]), 0, 1),
    "mkldnn::_linear_pointwise": shaped(lambda s: linear(s[0], s[1][0]), 0, 1),
    "mkl::_mkl_linear": shaped(lambda s: linear(s[0], s[2][0]), 0, 2),  # (x, packed, original weight [N, K], ...)
    "onednn::qlinear_pointwise": shaped(lambda s: linear(s[0], packed_n(s[0], s[3])), 0, 3),
    # attention: q, k, v come first in every variant (CPU flash, CUDA flash / efficient / cuDNN)
    **{name: shaped(lambda s: sdpa(s[0], s[1], s[2]), 0, 1, 2) for name in oc.SDPA_KERNELS},
    # convolutions need their output size (stride, padding): counted at the dispatcher, which sees the output
    **{name: lambda s: None for name in oc.CONVOLUTION_KERNELS},
    # packed int8 weights: the recorded shapes hold the activation only
    **{name: lambda s: None for name in oc.QUANTIZED_PACKED},
}


def mm(a, b) -> int:
    """[M, K] @ [K, N]."""
    return 2 * int(a[0]) * int(a[1]) * int(b[1])


def bmm(a, b) -> int:
    """[B, M, K] @ [B, K, N]."""
    return 2 * int(a[0]) * int(a[1]) * int(a[2]) * int(b[2])


def sdpa(q, k, v) -> int:
    """q @ k^T and weights @ v, each 2 per multiply-accumulate. torch's sdpa_flop_count asserts that k and v have
    q's head count, which grouped-query attention (Llama, Qwen2: fewer key/value heads) breaks."""
    *lead, s_q, d = q
    s_k, d_v = k[-2], v[-1]
    return 2 * numel(lead) * s_q * s_k * (d + d_v)
