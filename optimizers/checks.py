"""What passes ask of a model before they apply: its weights' dtype, the modules it holds, and the traits earlier
passes gave it. Shared here so that precision and quantization read traits instead of each other's classes."""
from __future__ import annotations

import torch

from profiler.models.loaded import LoadedModel


def float_params(loaded: LoadedModel) -> list[torch.Tensor]:
    return [p for p in loaded.module.parameters() if p.is_floating_point()]


def weight_dtype(loaded: LoadedModel) -> torch.dtype | None:
    """The dtype of the model's floating-point weights (of the first one), None when it has none."""
    params = float_params(loaded)
    return params[0].dtype if params else None


def count_modules(loaded: LoadedModel, *types: type) -> int:
    """How many of the model's modules are instances of `types`."""
    return sum(isinstance(m, types) for m in loaded.module.modules())


def holds_int8(loaded: LoadedModel) -> bool:
    """True for a model already holding int8 kernels, which float-precision passes must leave alone: one a pass
    quantized, or a loaded model with torch.ao quantized modules."""
    return bool(loaded.traits.int8) or any(
        type(m).__module__.startswith("torch.ao.nn.quantized") for m in loaded.module.modules())


def int8_reason(loaded: LoadedModel) -> str | None:
    """Why a float-precision pass cannot apply to an int8 model; None when the model is not int8."""
    if holds_int8(loaded):
        return "the model is already int8-quantized; its int8 kernels take float32 activations"
    return None


def float32_reason(loaded: LoadedModel) -> str | None:
    """Why quantization cannot start from this model (autocast, or weights not in float32); None when it can."""
    if loaded.traits.autocast:
        return "quantized kernels take float32 activations, and autocast would feed them bf16/fp16"
    dtype = weight_dtype(loaded)
    if dtype not in (None, torch.float32):
        return f"quantization starts from float32 weights, these are {str(dtype).replace('torch.', '')}"
    return None
