"""Reduced precision: bf16 weights, fp16 (GPU), autocast mixed precision."""
from __future__ import annotations

import torch
from torch import nn

from profiler.devices import cpu_features
from profiler.runner import map_tensors

from .base import Pass, note, register, with_module


def _float_params(loaded) -> list[torch.Tensor]:
    return [p for p in loaded.module.parameters() if p.is_floating_point()]


def _int8(loaded) -> str | None:
    from .quantize import quantized

    if quantized(loaded.module):
        return "the model is already int8-quantized; its int8 kernels take float32 activations"
    return None


def _cast_to(dtype: torch.dtype):
    def check(loaded, device):
        if _int8(loaded):
            return _int8(loaded)
        params = _float_params(loaded)
        if not params:
            return "the model has no floating-point weights to cast"
        if all(p.dtype == dtype for p in params):
            return f"the weights are already {str(dtype).replace('torch.', '')}"
        return None

    def apply(loaded, device):
        cast = lambda t: t.to(dtype) if t.is_floating_point() else t
        out = with_module(loaded, loaded.module.to(dtype), args=map_tensors(loaded.args, cast),
                          kwargs=map_tensors(loaded.kwargs, cast))
        if device.type == "cpu" and dtype == torch.bfloat16 and not {"avx512_bf16", "amx_bf16"} & set(cpu_features()):
            note(out, warning="this CPU has no native bf16 (AVX-512 BF16 or AMX); bf16 may be slower than fp32 here")
        return out

    return check, apply


class Autocast(nn.Module):
    """Runs the wrapped model under torch.autocast: matmuls/convs in low precision, reductions in fp32."""

    def __init__(self, inner: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.inner, self.device_type, self.dtype = inner, device_type, dtype

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.inner(*args, **kwargs)


def _autocast_apply(loaded, device):
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return note(with_module(loaded, Autocast(loaded.module, device.type, dtype)),
                {"dtype": str(dtype).replace("torch.", "")})


def _autocast_check(loaded, device):
    if isinstance(loaded.module, Autocast):
        return "the model already runs under autocast"
    if _int8(loaded):
        return _int8(loaded)
    return None if _float_params(loaded) else "the model has no floating-point weights"


_bf16_check, _bf16_apply = _cast_to(torch.bfloat16)
_fp16_check, _fp16_apply = _cast_to(torch.float16)
register(Pass("bf16", "precision", "Cast weights and float inputs to bfloat16 (fast where the CPU has AVX-512 BF16 or "
              "AMX, and on GPUs); halves weight memory.", ("cpu", "cuda"), _bf16_apply, _bf16_check, group="precision"))
register(Pass("fp16", "precision", "Cast weights and float inputs to float16 for tensor-core GPUs.", ("cuda",),
              _fp16_apply, _fp16_check, group="precision"))
register(Pass("autocast", "precision", "Mixed precision with torch.autocast: bf16 on the CPU, fp16 on a GPU; weights "
              "stay fp32, matmuls and convs run in low precision.", ("cpu", "cuda"), _autocast_apply, _autocast_check,
              group="precision"))
