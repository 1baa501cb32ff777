"""Quantization: dynamic int8 (Linear/LSTM), static int8 with calibration (PT2E, x86 Inductor quantizer), weight-only
int8."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.quantization.quantization_mappings import get_default_dynamic_quant_module_mappings

from .base import Pass, PassNotApplicable, outcome, register
from .calibration import conform, input_sets
from .checks import count_modules, float32_reason


class FullRangeLinear(nnqd.Linear):
    """Dynamic int8 Linear quantizing activations to all 256 levels. torch's own uses 128 (reduce_range) so that CPUs
    without VNNI, which add pairs of u8*s8 products in int16, cannot saturate; with VNNI they add in int32 and the
    halved resolution only costs accuracy: real MiniLM held-out worst cosine 0.972 with it, 0.992 without."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False).to(x.dtype)


class Int8WeightLinear(nn.Module):
    """A Linear with int8 weights (one scale per output channel) multiplied by bf16 inputs in one kernel
    (aten._weight_int8pack_mm); the output goes back to the input's dtype, so what surrounds it stays float32. At
    batch 1 a decoder's Linears read their weights once per token: a quarter of float32's bytes. Measured on this
    project's Zen 4 CPU, [1, 576] x [1536, 576]: 46 us float32, 14 us this (290 us with float32 inputs, so those are
    cast)."""

    def __init__(self, linear: nn.Linear, act: torch.dtype = torch.bfloat16):
        super().__init__()
        w = linear.weight.detach().float()
        # the kernel takes the scale in the input dtype: round to that first, so the int8 grid is the one it uses
        scale = (w.abs().amax(1) / 127).clamp(min=torch.finfo(act).tiny).to(act)
        self.register_buffer("weight_int8", torch.round(w / scale.float()[:, None]).clamp(-128, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.act, self.in_features, self.out_features = act, linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, self.in_features).to(self.act), self.weight_int8,
                                               self.scale)
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, {self.act} inputs"


class Bf16Linear(nn.Module):
    """A Linear holding bf16 weights, fed bf16 inputs, answering in the input's dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16),
                                                                  requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


@functools.cache
def int8_weight_kernel_reason(device_type: str) -> str | None:
    """Why aten._weight_int8pack_mm cannot run here with bf16 inputs, or None when it can."""
    try:
        w = torch.ones(8, 64, dtype=torch.int8, device=device_type)
        y = torch.ops.aten._weight_int8pack_mm(torch.ones(1, 64, dtype=torch.bfloat16, device=device_type), w,
                                               torch.ones(8, dtype=torch.bfloat16, device=device_type))
    except (RuntimeError, NotImplementedError) as exc:
        return f"this torch has no int8-weight kernel on {device_type} ({str(exc).splitlines()[0][:80]})"
    return None if bool((y.float() == 64).all()) else f"the int8-weight kernel on {device_type} gave wrong results"


def int8_weights(module: nn.Module, keep_bf16: tuple[nn.Module, ...] = ()) -> int:
    """Replace every nn.Linear in `module` by an Int8WeightLinear (those in `keep_bf16` by a Bf16Linear), in place;
    returns how many became int8."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                keep = any(child is k for k in keep_bf16)
                setattr(parent, name, Bf16Linear(child) if keep else Int8WeightLinear(child))
                n += not keep
    return n


ACTIVATIONS = {True: "8-bit (full range)", False: "7-bit (reduce_range: this CPU saturates at 8)"}


@functools.cache
def full_range_exact() -> bool:
    """Whether this CPU's int8 kernels take full-range activations without saturating: all-255 activations times
    all-127 weights is exactly where int16 pair sums overflow (2 * 255 * 127 > 32767)."""
    linear = nn.Linear(64, 8, bias=False)
    nn.init.ones_(linear.weight)
    linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    q = FullRangeLinear.from_float(linear)
    with torch.inference_mode():
        y = q(torch.ones(4, 64))
    return bool(torch.allclose(y, torch.full_like(y, 64.0), rtol=0.02))


def _dynamic_check(loaded, device):
    if not count_modules(loaded, nn.Linear, nn.LSTM):
        return "no nn.Linear or nn.LSTM modules to quantize (a TorchScript or exported model hides them)"
    return float32_reason(loaded)


def _dynamic_apply(loaded, device):
    n = count_modules(loaded, nn.Linear, nn.LSTM)
    # per-channel weight scales for Linear: measured cosine on BERT-base 0.99872 -> 0.99919, real MiniLM
    # sentence embeddings 0.934 -> 0.976, at the same speed
    spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig,
            nn.LSTM: torch.ao.quantization.default_dynamic_qconfig}
    full = full_range_exact()
    mapping = {**get_default_dynamic_quant_module_mappings(), **({nn.Linear: FullRangeLinear} if full else {})}
    q = torch.ao.quantization.quantize_dynamic(loaded.module, spec, dtype=torch.qint8, mapping=mapping)
    return outcome(loaded, q, {"layers_quantized": n, "weights": "int8, per output channel",
                               "activations": ACTIVATIONS[full]}, traits={"int8": "dynamic"})


def _static_check(loaded, device):
    if isinstance(loaded.module, torch.jit.ScriptModule):
        return "static PT2E quantization needs a model torch.export can capture, not TorchScript"
    return float32_reason(loaded)


class _ByPosition(nn.Module):
    """Exposes a model taking (args, kwargs) as one taking positional tensors only, as torchao's x86 lowering needs."""

    def __init__(self, inner: nn.Module, n_args: int, keys: list[str]):
        super().__init__()
        self.inner, self.n_args, self.keys = inner, n_args, keys

    def forward(self, *xs):
        return self.inner(*xs[: self.n_args], **dict(zip(self.keys, xs[self.n_args:])))


class _ByName(nn.Module):
    """A positional-only graph, callable again with the model's own (args, kwargs). The submodule is not called
    `graph`: exporting this wrapper makes a GraphModule, whose own `graph` attribute it would shadow."""

    def __init__(self, program: nn.Module, keys: list[str]):
        super().__init__()
        self.program, self.keys = program, keys

    def forward(self, *args, **kwargs):
        return self.program(*args, *[kwargs[k] for k in self.keys])


def _drop_unused_weights(gm: torch.fx.GraphModule) -> int:
    """convert_pt2e folds each weight into an int8 constant but leaves the float original registered: drop those
    the graph no longer reads, or the model keeps both copies in memory and counts both in its size."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    unused = [name for name, _ in [*gm.named_parameters(), *gm.named_buffers()] if name not in used]
    for name in unused:
        owner, _, attr = name.rpartition(".")
        delattr(gm.get_submodule(owner) if owner else gm, attr)
    return len(unused)


def _static_apply(loaded, device):
    """PT2E: export, insert observers, calibrate on the calibration set (calibration.input_sets), convert to a q/dq
    graph. On its own the result runs through torchao's x86 lowering; followed by torch-compile, Inductor (with
    freezing) lowers the q/dq graph to fused oneDNN int8 kernels instead, which is the fast path PT2E is built for."""
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    keys = list(loaded.kwargs)
    flat = tuple(loaded.args) + tuple(loaded.kwargs[k] for k in keys)
    try:
        exported = torch.export.export(_ByPosition(loaded.module, len(loaded.args), keys), flat, strict=False).module()
    except Exception as exc:  # noqa: BLE001
        raise PassNotApplicable(f"torch.export cannot capture this model ({type(exc).__name__})") from None
    # drop what no output reads: MiniLM's pooler (Linear + tanh, unused by the sentence embedding) otherwise makes
    # the x86 quantizer fail on a Linear-unary pattern without an output (IndexError in its annotation)
    exported.graph.eliminate_dead_code()
    exported.recompile()
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    # calibrated on the calibration set, which the accuracy proof (the held-out set) never uses
    sets = input_sets(loaded)
    with torch.no_grad():
        for batch in sets.calibration:
            args, kwargs = conform(batch, loaded)
            prepared(*args, *[kwargs[k] for k in keys])
    reference = convert_pt2e(prepared)
    _drop_unused_weights(reference)
    lowered = lower_pt2e_quantized_to_x86(reference, flat)  # re-exports: the reference graph stays as it is
    # two forms: torchao's x86 lowering to oneDNN int8 kernels runs when nothing compiles it; the q/dq reference
    # graph is what Inductor with freezing lowers to fused int8 kernels, the form the torch-compile pass compiles
    return outcome(loaded, _ByName(lowered, keys),
                   {"calibration_batches": len(sets.calibration), "calibration": sets.calibration_name,
                    "held_out": sets.held_out_name,
                    "lowering": "torchao x86 (torch-compile after it lowers with Inductor)"},
                   warning=None if sets.real else "calibrated on random draws of the example shapes; calibrate on "
                                                  "real data before trusting accuracy on it",
                   traits={"int8": "static", "compile_target": _ByName(reference, keys)})


def _weight_only_check(loaded, device):
    if not count_modules(loaded, nn.Linear):
        return "no nn.Linear modules to quantize"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "needs the torchao package"
    return float32_reason(loaded)


def _weight_only_apply(loaded, device):
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(loaded.module, Int8WeightOnlyConfig())
    return outcome(loaded, details={"layers_quantized": count_modules(loaded, nn.Linear)},
                   warning="weight-only int8 saves memory; in eager mode it dequantizes per call and is rarely faster",
                   traits={"int8": "weight-only"})


register(
    Pass(
        "dynamic-int8",
        "quantization",
        "Dynamic int8 quantization of Linear and LSTM layers "
        "(torch.ao quantize_dynamic): per-channel int8 weights, activations quantized on the fly.",
        ("cpu",),
        _dynamic_apply,
        _dynamic_check,
        group="quantization",
    )
)
register(Pass("static-int8", "quantization", "Static int8 with calibration: PT2E export, X86InductorQuantizer, "
              "calibrate, convert to int8. Alone it runs torchao's oneDNN lowering; follow it with torch-compile for "
              "Inductor's fused int8 kernels.", ("cpu",), _static_apply, _static_check,
              group="quantization", pays_off_with=("torch-compile",)))
register(Pass("weight-only-int8", "quantization", "Weight-only int8 of Linear layers (torchao): a quarter of the "
              "weight memory, activations stay float.", ("cpu", "cuda"), _weight_only_apply, _weight_only_check,
              group="quantization"))
