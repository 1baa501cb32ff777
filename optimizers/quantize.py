"""Quantization: dynamic int8 (Linear/LSTM), static int8 with calibration (PT2E, x86 Inductor quantizer), weight-only int8."""
from __future__ import annotations

import torch
from torch import nn

from .base import Pass, PassNotApplicable, note, register, with_module


def _has(loaded, *types) -> int:
    return sum(isinstance(m, types) for m in loaded.module.modules())


def _no_float(loaded) -> str | None:
    from .precision import Autocast

    if isinstance(loaded.module, Autocast):
        return "quantized kernels take float32 activations, and autocast would feed them bf16/fp16"
    params = [p for p in loaded.module.parameters() if p.is_floating_point()]
    if params and params[0].dtype != torch.float32:
        return f"quantization starts from float32 weights, these are {str(params[0].dtype).replace('torch.', '')}"
    return None


def _dynamic_check(loaded, device):
    if not _has(loaded, nn.Linear, nn.LSTM):
        return "no nn.Linear or nn.LSTM modules to quantize (a TorchScript or exported model hides them)"
    return _no_float(loaded)


def _dynamic_apply(loaded, device):
    n = _has(loaded, nn.Linear, nn.LSTM)
    # per-channel weight scales for Linear: measured cosine on BERT-base 0.99872 -> 0.99919, real MiniLM
    # sentence embeddings 0.934 -> 0.976, at the same speed
    spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig,
            nn.LSTM: torch.ao.quantization.default_dynamic_qconfig}
    q = torch.ao.quantization.quantize_dynamic(loaded.module, spec, dtype=torch.qint8)
    return note(with_module(loaded, q), {"layers_quantized": n, "weights": "int8, per output channel"})


def _static_check(loaded, device):
    if isinstance(loaded.module, torch.jit.ScriptModule):
        return "static PT2E quantization needs a model torch.export can capture, not TorchScript"
    return _no_float(loaded)


class _ByPosition(nn.Module):
    """Exposes a model taking (args, kwargs) as one taking positional tensors only, as torchao's x86 lowering needs."""

    def __init__(self, inner: nn.Module, n_args: int, keys: list[str]):
        super().__init__()
        self.inner, self.n_args, self.keys = inner, n_args, keys

    def forward(self, *xs):
        return self.inner(*xs[: self.n_args], **dict(zip(self.keys, xs[self.n_args:])))


class _ByName(nn.Module):
    """The lowered int8 graph, callable again with the model's own (args, kwargs)."""

    def __init__(self, lowered: nn.Module, keys: list[str]):
        super().__init__()
        self.lowered, self.keys = lowered, keys

    def forward(self, *args, **kwargs):
        return self.lowered(*args, *[kwargs[k] for k in self.keys])


def _static_apply(loaded, device):
    """PT2E: export, insert observers, calibrate on the example inputs, convert to q/dq, then lower to x86 oneDNN
    int8 kernels with torchao (constant folding + weight prepacking). Inductor's own freezing cannot fold
    onednn.qlinear_prepack in torch 2.13 (no fake kernel), and without freezing the q/dq graph is no faster."""
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    keys = list(loaded.kwargs)
    flat = tuple(loaded.args) + tuple(loaded.kwargs[k] for k in keys)
    try:
        exported = torch.export.export(_ByPosition(loaded.module, len(loaded.args), keys), flat, strict=False).module()
    except Exception as exc:  # noqa: BLE001
        raise PassNotApplicable(f"torch.export cannot capture this model ({type(exc).__name__})") from None
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        prepared(*flat)  # calibration on the example inputs
    lowered = lower_pt2e_quantized_to_x86(convert_pt2e(prepared), flat)
    return note(with_module(loaded, _ByName(lowered, keys)), {"calibration_batches": 1, "lowering": "torchao x86"},
                warning="calibrated on the example inputs only; calibrate on real data before trusting accuracy")


def _weight_only_check(loaded, device):
    if not _has(loaded, nn.Linear):
        return "no nn.Linear modules to quantize"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "needs the torchao package"
    return _no_float(loaded)


def _weight_only_apply(loaded, device):
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(loaded.module, Int8WeightOnlyConfig())
    return note(loaded, {"layers_quantized": _has(loaded, nn.Linear)},
                warning="weight-only int8 saves memory; in eager mode it dequantizes per call and is rarely faster")


register(Pass("dynamic-int8", "quantization", "Dynamic int8 quantization of Linear and LSTM layers "
              "(torch.ao quantize_dynamic): per-channel int8 weights, activations quantized on the fly.", ("cpu",), _dynamic_apply,
              _dynamic_check, group="quantization"))
register(Pass("static-int8", "quantization", "Static int8 with calibration: PT2E export, X86InductorQuantizer, "
              "calibrate, convert, lower to oneDNN int8 kernels (torchao).", ("cpu",), _static_apply, _static_check,
              group="quantization", terminal=True))
register(Pass("weight-only-int8", "quantization", "Weight-only int8 of Linear layers (torchao): a quarter of the "
              "weight memory, activations stay float.", ("cpu", "cuda"), _weight_only_apply, _weight_only_check,
              group="quantization"))
