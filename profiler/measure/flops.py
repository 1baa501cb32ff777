"""FLOPs per operator and per graph node that hold across precisions, quantization and compilation.

Convention (torch.utils.flop_counter's and fvcore's): FLOPs are the work of matrix multiplies, convolutions and
attention, 2 per multiply-accumulate. int8 kernels count their multiply-accumulates the same way, so an int8 or
compiled model does the same work per inference as its float original. Element-wise, normalisation and data-movement
ops do no work in this count.

Two sources, because neither sees everything:
- the untimed detail session's profiler events (record_shapes): formulas over each event's recorded input shapes,
  keyed by event name. They see what really ran, the extern kernels of a compiled graph included
  (mkl::_mkl_linear, onednn::qlinear_pointwise), and land on the same names the timed ops carry.
- one untimed inference under FlopCounterMode with formulas added for ops it lacks (CPU attention, quantized
  kernels). It sees real arguments and outputs, so it counts ops whose weights hide in packed parameters
  (quantized::linear_dynamic records no weight shape), and it counts per graph node.

An op's FLOPs are "known" when a formula counted it, when it runs inside an op that was counted, or when it is an
ATen op outside the matmul-class families (zero work by the convention above). FLOP coverage is the share of exec
time in such ops: below 1 it says an achieved-FLOP/s figure misses work it could not count.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.utils.flop_counter as fc
from torch.utils._python_dispatch import TorchDispatchMode

from profiler import op_categories as oc
from profiler.schema import OpStat

Shapes = list  # recorded input shapes of one event, one list per argument ([] for non-tensors)


def _numel(shape) -> int:
    return math.prod(int(d) for d in shape) if shape else 0


def _linear(x, n_out: int) -> int:
    return 2 * _numel(x) * int(n_out)  # numel(x) = M*K, times N outputs


def _packed_n(x, w) -> int:
    """Output features of a prepacked int8 weight, stored [K, N] by oneDNN (or [N, K])."""
    return w[1] if w[0] == x[-1] and len(w) > 1 else w[0]


def _shaped(fn: Callable[..., int | None], *need: int) -> Callable[[Shapes], int | None]:
    """A formula that returns None (uncountable from shapes) when an argument it reads has no recorded shape."""
    def formula(s: Shapes) -> int | None:
        return fn(s) if len(s) > max(need) and all(s[i] for i in need) else None
    return formula


# profiler event name -> FLOPs from the event's recorded input shapes; None means the shapes do not say (the
# dispatcher count is used instead). Wrappers (aten::linear, aten::matmul) are not here: their work shows in the
# kernels they call.
EVENT_FORMULAS: dict[str, Callable[[Shapes], int | None]] = {
    "aten::mm": _shaped(lambda s: fc.mm_flop(s[0], s[1]), 0, 1),
    "aten::addmm": _shaped(lambda s: fc.mm_flop(s[1], s[2]), 1, 2),
    "aten::bmm": _shaped(lambda s: fc.bmm_flop(s[0], s[1]), 0, 1),
    "aten::baddbmm": _shaped(lambda s: fc.bmm_flop(s[1], s[2]), 1, 2),
    "aten::_int_mm": _shaped(lambda s: fc.mm_flop(s[0], s[1]), 0, 1),
    "aten::_weight_int8pack_mm": _shaped(lambda s: _linear(s[0], s[1][0]), 0, 1),  # weight [N, K]
    "aten::mkldnn_linear": _shaped(lambda s: _linear(s[0], s[1][0]), 0, 1),
    "mkldnn::_linear_pointwise": _shaped(lambda s: _linear(s[0], s[1][0]), 0, 1),
    "mkl::_mkl_linear": _shaped(lambda s: _linear(s[0], s[2][0]), 0, 2),  # (x, packed, original weight [N, K], ...)
    "onednn::qlinear_pointwise": _shaped(lambda s: _linear(s[0], _packed_n(s[0], s[3])), 0, 3),
    # attention: q, k, v come first in every variant (CPU flash, CUDA flash / efficient / cuDNN)
    **{name: _shaped(lambda s: _sdpa(s[0], s[1], s[2]), 0, 1, 2) for name in oc.SDPA_KERNELS},
    # convolutions need their output size (stride, padding): counted at the dispatcher, which sees the output
    **{name: lambda s: None for name in oc.CONVOLUTION_KERNELS},
    # packed int8 weights: the recorded shapes hold the activation only
    **{name: lambda s: None for name in oc.QUANTIZED_PACKED},
}

# ATen ops that do matmul-class work no formula here counts: their time makes a FLOP/s figure partial
UNCOUNTED_ATEN = (
    "aten::lstm",
    "aten::gru",
    "aten::rnn_",
    "aten::mkldnn_rnn",
    "aten::_thnn_fused",
    "aten::lstm_cell",
    "aten::gru_cell",
    "aten::quantized_lstm",
    "aten::quantized_gru",
    "aten::cdist",
    "aten::_cdist",
    "aten::linalg_solve",
    "aten::linalg_inv",
    "aten::linalg_cholesky",
    "aten::linalg_qr",
    "aten::linalg_svd",
    "aten::linalg_eig",
    "aten::linalg_lstsq",
    "aten::linalg_lu",
    "aten::linalg_det",
    "aten::linalg_slogdet",
    "aten::_linalg_",
    "aten::fft_",
    "aten::_fft_",
    "aten::conv_tbc",
    "aten::_nnpack",
)  # norms are not here
# non-ATen namespaces that only quantize, dequantize or repack
_ZERO_WORK_PREFIXES = ("quantized_decomposed::", "onednn::qlinear_prepack", "onednn::qconv_prepack", "prim::")


def _dispatch_linear(x, *args, out_shape=None, **kwargs) -> int:
    return _linear(x, out_shape[-1])


def _dispatch_qconv(x, packed, *args, out_shape=None, **kwargs) -> int:
    weight = packed.unpack()[0]  # [C_out, C_in / groups, *kernel]
    return 2 * _numel(out_shape) * _numel(weight.shape[1:])


def _sdpa(q, k, v) -> int:
    """q @ k^T and weights @ v, each 2 per multiply-accumulate. torch's sdpa_flop_count asserts that k and v have
    q's head count, which grouped-query attention (Llama, Qwen2: fewer key/value heads) breaks."""
    *lead, s_q, d = q
    s_k, d_v = k[-2], v[-1]
    return 2 * _numel(lead) * s_q * s_k * (d + d_v)


def _dispatch_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return _sdpa(q, k, v)


def _custom_mapping() -> dict:
    """Formulas FlopCounterMode lacks in torch 2.13 (it counts CPU attention and every quantized kernel as 0), and
    attention formulas that accept grouped-query shapes."""
    ops = torch.ops
    table = {"aten": {name: _dispatch_sdpa for name in (
                 "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                 "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")},
             "quantized": {name: _dispatch_linear for name in ("linear_dynamic", "linear_relu_dynamic",
                                                               "linear_dynamic_fp16", "linear", "linear_relu")}
             | {name: _dispatch_qconv for name in ("conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu",
                                                    "conv3d_relu")},
             "onednn": {"qlinear_pointwise": _dispatch_linear}}
    out = {}
    for ns, formulas in table.items():
        for name, fn in formulas.items():
            try:
                out[getattr(getattr(ops, ns), name)] = fn
            except (AttributeError, RuntimeError):  # a build without that kernel library
                continue
    return out


def counter() -> fc.FlopCounterMode:
    """A FlopCounterMode that also counts CPU attention and quantized kernels."""
    return fc.FlopCounterMode(display=False, custom_mapping=_custom_mapping())


def op_name(packet) -> str:
    """FlopCounterMode's key (an OpOverloadPacket, 'aten.addmm') as the profiler names the op ('aten::addmm')."""
    return str(packet).replace(".", "::", 1)


def _tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(o) for o in obj)
    return 0


class BytesCounter(TorchDispatchMode):
    """Bytes each ATen op moves: its tensor inputs' and outputs' bytes per call (views move nothing). An upper
    bound for ops that read a tensor only in part, and a lower one for ops whose weights hide in packed objects."""

    def __init__(self):
        super().__init__()
        self.bytes: dict[str, float] = defaultdict(float)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with self:  # a composite op (aten::linear) counts as the kernels it decomposes into, as the timed ops do
            decomposed = func.decompose(*args, **kwargs)
        if decomposed is not NotImplemented:
            return decomposed
        out = func(*args, **kwargs)
        viewed = getattr(func, "is_view", False)
        moved = 0 if viewed else _tensor_bytes(list(args)) + _tensor_bytes(list(kwargs.values())) + _tensor_bytes(out)
        self.bytes[op_name(func.overloadpacket)] += moved
        return out


def _count(run_once: Callable[[], object], moved: BytesCounter | None = None) -> fc.FlopCounterMode:
    """One call of run_once under counter(), with Dynamo switched off: a compiled model runs its original module,
    which does the same work, and nothing recompiles. With `moved`, bytes are counted in the same pass."""
    with torch.inference_mode(), warnings.catch_warnings(), counter() as mode, (moved or contextlib.nullcontext()):
        # FlopCounterMode's module tracker hooks every module; harmless here, and torch.compile warns about it
        warnings.filterwarnings("ignore", message=".*global hooks on modules.*")
        torch.compiler.disable(run_once)()
    return mode


def dispatch_counts(run_once: Callable[[], object]) -> dict[str, float]:
    """FLOPs per op name of one call of run_once, counted at the dispatcher (only ops the events cannot count are
    read from this)."""
    return dispatch_counts_and_bytes(run_once)[0]


def dispatch_counts_and_bytes(run_once: Callable[[], object]) -> tuple[dict[str, float], dict[str, float]]:
    """(FLOPs per op name, bytes moved per op name) of one call of run_once, both counted at the dispatcher."""
    moved = BytesCounter()
    mode = _count(run_once, moved)
    flops = {op_name(k): float(v) for k, v in mode.get_flop_counts().get("Global", {}).items()}
    return flops, dict(moved.bytes)


def module_flops(run_once: Callable[[], object]) -> dict[str, float]:
    """Own FLOPs per module path ('' for the root) of one call: the work not inside a submodule that ran."""
    inclusive = {}
    for key, counts in _count(run_once).get_flop_counts().items():
        if key != "Global":  # keys are 'RootClass' and 'RootClass.path.to.module'
            inclusive[key.split(".", 1)[1] if "." in key else ""] = float(sum(counts.values()))
    own = dict(inclusive)
    for path, value in inclusive.items():
        parent = path
        while parent:  # the nearest ancestor that ran (a ModuleList never runs itself)
            parent = parent.rpartition(".")[0]
            if parent in inclusive:
                own[parent] -= value
                break
    return own


@dataclass
class OpFlops:
    """FLOPs per op name for the recorded iterations, and which op names' FLOPs are known."""

    flops: dict[str, float] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)


def _zero_work(name: str) -> bool:
    if name.startswith("aten::"):
        return not name.startswith(UNCOUNTED_ATEN)
    return name.startswith(_ZERO_WORK_PREFIXES)


def _counted_ancestor(evt) -> bool:
    parent = evt.cpu_parent
    while parent is not None:
        if parent.name in EVENT_FORMULAS:
            return True
        parent = parent.cpu_parent
    return False


def count_events(events: Iterable, dispatched: dict[str, float] | None = None, iterations: int = 1,
                 is_op: Callable[[object], bool] = lambda e: True) -> OpFlops:
    """FLOPs per op name per inference from detail events (shapes recorded); ops the shapes cannot count take
    their count from `dispatched` (dispatch_counts of one inference)."""
    dispatched = dispatched or {}
    flops: dict[str, float] = defaultdict(float)
    unresolved: set[str] = set()
    covered: dict[str, bool] = {}
    for evt in events:
        if not is_op(evt):
            continue
        name = evt.name
        inside = _counted_ancestor(evt)
        formula = EVENT_FORMULAS.get(name)
        ok = inside or _zero_work(name)
        if formula is not None and not inside:  # the outermost counted op holds the work: no double count
            value = formula([list(s) for s in (evt.input_shapes or [])])
            if value is None:
                unresolved.add(name)
            else:
                flops[name] += value
            ok = True
        covered[name] = covered.get(name, True) and ok
    n = max(1, iterations)
    out = OpFlops({k: v / n for k, v in flops.items()})
    for name in unresolved:  # shapes could not say: take the dispatcher's count of one inference, if it saw the op
        if name in dispatched:
            out.flops[name] = dispatched[name]
        else:
            covered[name] = False
    out.known = {name for name, ok in covered.items() if ok}
    return out


def coverage(ops: list[OpStat]) -> float:
    """Share of exec time in ops whose FLOPs are known (1.0 when there is no exec time)."""
    total = sum(o.exec_ms for o in ops)
    return sum(o.exec_ms for o in ops if o.flops_known) / total if total > 0 else 1.0


def achieved(ops: list[OpStat], wall_ms: float) -> tuple[float, float]:
    """(FLOPs per inference, achieved FLOP/s over wall time)."""
    total = sum(o.flops for o in ops)
    return total, total / (wall_ms * 1e-3) if wall_ms > 0 else 0.0
