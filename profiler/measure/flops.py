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
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.utils.flop_counter as fc
from torch.utils._python_dispatch import TorchDispatchMode

from profiler import op_categories as oc
from profiler.schema import OpStat
from profiler.traces import work


def _dispatch_linear(x, *args, out_shape=None, **kwargs) -> int:
    return 2 * work.numel(x) * int(out_shape[-1])  # numel(x) = M*K, times N outputs


def _dispatch_qconv(x, packed, *args, out_shape=None, **kwargs) -> int:
    weight = packed.unpack()[0]  # [C_out, C_in / groups, *kernel]
    return 2 * work.numel(out_shape) * work.numel(weight.shape[1:])


def _dispatch_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """q @ k^T and weights @ v (grouped-query shapes too: torch's sdpa_flop_count asserts equal head counts)."""
    *lead, s_q, d = q
    return 2 * work.numel(lead) * s_q * k[-2] * (d + v[-1])


def _custom_mapping() -> dict:
    """Formulas FlopCounterMode lacks in torch 2.13 (it counts CPU attention and every quantized kernel as 0), and
    attention formulas that accept grouped-query shapes."""
    ops = torch.ops
    table = {"aten": {name.split("::")[1]: _dispatch_sdpa for name in oc.SDPA_KERNELS},
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
        return not name.startswith(oc.UNCOUNTED_MATMUL)
    return name.startswith(oc.ZERO_WORK)


# ops whose weights hide in packed parameters: their recorded shapes hold the activation only, so their FLOPs are the
# dispatcher's; and the dispatcher name a convolution kernel's count is filed under
DISPATCHED_ONLY = frozenset(oc.QUANTIZED_PACKED)
_DISPATCH_NAME = {name: "aten::convolution" for name in oc.CONVOLUTION_KERNELS}


def _wrappers(events: list) -> set[int]:
    """ids of the events with a formula that enclose another event with one: their work is the inner op's, where
    the kernel time sits (aten::convolution -> aten::mkldnn_convolution: the mkldnn row holds the FLOPs)."""
    out: set[int] = set()
    for evt in events:
        parent = evt.cpu_parent
        while parent is not None and id(parent) not in out:
            if parent.name in work.EVENT_FORMULAS or parent.name in DISPATCHED_ONLY:
                out.add(id(parent))
            parent = parent.cpu_parent
    return out


def count_events(events: Iterable, dispatched: dict[str, float] | None = None, iterations: int = 1,
                 is_op: Callable[[object], bool] = lambda e: True) -> OpFlops:
    """FLOPs per op name per inference from detail events (shapes and concrete arguments recorded), on the innermost
    counted op of each call stack; ops the recorded arguments cannot count take their count from `dispatched`
    (dispatch_counts of one inference)."""
    dispatched = dispatched or {}
    flops: dict[str, float] = defaultdict(float)
    unresolved: set[str] = set()
    covered: dict[str, bool] = {}
    ops = [evt for evt in events if is_op(evt)]
    counted = [evt for evt in ops if evt.name in work.EVENT_FORMULAS or evt.name in DISPATCHED_ONLY]
    wrappers = _wrappers(counted)
    for evt in ops:
        name = evt.name
        ok = _zero_work(name) or id(evt) in wrappers
        formula = work.EVENT_FORMULAS.get(name)
        if (formula is not None or name in DISPATCHED_ONLY) and id(evt) not in wrappers:
            value = formula([list(s) for s in (evt.input_shapes or [])], getattr(evt, "concrete_inputs", None)) \
                if formula is not None else None
            if value is None:
                unresolved.add(name)
            else:
                flops[name] += value
            ok = True
        covered[name] = covered.get(name, True) and ok
    n = max(1, iterations)
    out = OpFlops({k: v / n for k, v in flops.items()})
    for name in unresolved:  # the arguments could not say: the dispatcher's count of one inference, if it saw the op
        key = name if name in dispatched else _DISPATCH_NAME.get(name, name)
        if key in dispatched:
            out.flops[name] = out.flops.get(name, 0.0) + dispatched[key]
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
