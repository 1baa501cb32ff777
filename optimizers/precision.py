"""Reduced precision: bf16 weights, fp16 (GPU), autocast mixed precision."""
from __future__ import annotations

import torch
from torch import nn

from profiler.measure.session import map_tensors

from .base import Pass, outcome, register
from .checks import float_params, int8_reason, weight_dtype


def _cast_to(dtype: torch.dtype):
    def check(loaded, device):
        reason = int8_reason(loaded)
        if reason:
            return reason
        params = float_params(loaded)
        if not params:
            return "the model has no floating-point weights to cast"
        if all(p.dtype == dtype for p in params):
            return f"the weights are already {str(dtype).replace('torch.', '')}"
        return None

    def apply(loaded, device):
        cast = lambda t: t.to(dtype) if t.is_floating_point() else t
        return outcome(loaded, loaded.module.to(dtype), args=map_tensors(loaded.args, cast),
                       kwargs=map_tensors(loaded.kwargs, cast))

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
    name = str(dtype).replace("torch.", "")
    return outcome(loaded, Autocast(loaded.module, device.type, dtype), {"dtype": name}, traits={"autocast": name})


def _autocast_check(loaded, device):
    if loaded.traits.autocast:
        return "the model already runs under autocast"
    return int8_reason(loaded) or (None if float_params(loaded) else "the model has no floating-point weights")


_bf16_check, _bf16_apply = _cast_to(torch.bfloat16)
_fp16_check, _fp16_apply = _cast_to(torch.float16)
register(Pass("bf16", "precision", "Cast weights and float inputs to bfloat16 (fast where the CPU has AVX-512 BF16 or "
              "AMX, and on GPUs); halves weight memory.", ("cpu", "cuda"), _bf16_apply, _bf16_check, group="precision",
              precision="bf16"))
register(Pass("fp16", "precision", "Cast weights and float inputs to float16 for tensor-core GPUs.", ("cuda",),
              _fp16_apply, _fp16_check, group="precision", precision="fp16"))
register(Pass("autocast", "precision", "Mixed precision with torch.autocast: bf16 on the CPU, fp16 on a GPU; weights "
              "stay fp32, matmuls and convs run in low precision.", ("cpu", "cuda"), _autocast_apply, _autocast_check,
              group="precision", precision="bf16"))


ATTENTION_NAME = "oplens-bf16-math"


def bf16_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                   position_bias=None, cache=None, **kwargs):
    """Attention in bf16 written as matmul + softmax, which Inductor fuses and bf16 matmuls run fast on AVX-512 BF16
    and AMX (torch's fused SDPA kernel gains little from bf16 on the CPU). The softmax runs in fp32. Anything this
    simple form does not cover (position bias, paged cache, grouped KV heads, a causal prefix) goes to the stock
    SDPA function in the model's own precision."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q_len, kv_len = query.shape[2], key.shape[2]
    causal = bool(q_len > 1 and attention_mask is None
                  and (is_causal if is_causal is not None else getattr(module, "is_causal", True)))
    if (position_bias is not None or cache is not None or kwargs.get("softcap") is not None
            or getattr(module, "num_key_value_groups", 1) > 1 or (causal and kv_len != q_len)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal,
                                      position_bias, cache, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    q, k, v = (t.to(torch.bfloat16) for t in (query, key, value))
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    if causal:
        keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    elif attention_mask is not None:
        scores = (scores.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool
                  else scores + attention_mask.float())
    out = torch.matmul(scores.softmax(-1).to(torch.bfloat16), v)
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def _hf_model(module: nn.Module) -> nn.Module | None:
    """The Hugging Face model itself, or the first one inside a wrapper (minilm's sentence embedder)."""
    return next((m for m in module.modules() if getattr(m, "config", None) is not None
                 and hasattr(m, "set_attn_implementation")), None)


def _bf16_attention_check(loaded, device):
    module = _hf_model(loaded.module)
    if module is None:
        return "not a Hugging Face transformers model (the attention function is swapped through its config)"
    if getattr(module.config, "_attn_implementation", None) == ATTENTION_NAME:
        return "attention already runs in bf16"
    reason = int8_reason(loaded)
    if reason:
        return reason + "; apply bf16-attention before quantizing"
    dtype = weight_dtype(loaded)
    if dtype not in (None, torch.float32):
        return f"the model is already {str(dtype).replace('torch.', '')}, attention included"
    return None


def _bf16_attention_apply(loaded, device):
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, bf16_attention)
    # the mask is built per attention name, and an unknown name gets none: padding would be attended to
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    model = _hf_model(loaded.module)
    before = getattr(model.config, "_attn_implementation", None)
    model.set_attn_implementation(ATTENTION_NAME)
    return outcome(loaded, details={"from": before, "to": "bf16 matmul + fp32 softmax"})


register(Pass("bf16-attention", "precision", "Run only the attention of a Hugging Face model in bf16 (matmuls in "
              "bf16, softmax in fp32), leaving every Linear in fp32 for quantization; Inductor fuses it when "
              "compiled.", ("cpu",), _bf16_attention_apply, _bf16_attention_check, group="attention",
              precision="bf16"))
