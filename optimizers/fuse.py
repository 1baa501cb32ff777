"""Fusion: fold BatchNorm into the preceding convolution; fused attention (SDPA) for Hugging Face models."""
from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .base import Pass, outcome, register


def _conv_bn_pairs(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, bn name) for every BatchNorm registered right after a conv in the same parent: the layout
    of nn.Sequential blocks and of conv/norm layers such as transformers' ResNetConvLayer."""
    pairs = []
    for parent in module.modules():
        children = list(parent.named_children())
        for (a_name, a), (b_name, b) in zip(children, children[1:]):
            if isinstance(a, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d,
                                                                                   nn.BatchNorm3d)):
                pairs.append((parent, a_name, b_name))
    return pairs


def _fold_check(loaded, device):
    return None if _conv_bn_pairs(loaded.module) else "no convolution followed by BatchNorm to fold"


def _fold_apply(loaded, device):
    pairs = _conv_bn_pairs(loaded.module)
    loaded.module.eval()
    for parent, conv, bn in pairs:
        fused = fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn))
        setattr(parent, conv, fused)
        setattr(parent, bn, nn.Identity())
    return outcome(loaded, details={"folded": len(pairs)})


def _sdpa_check(loaded, device):
    config = getattr(loaded.module, "config", None)
    if config is None or not hasattr(loaded.module, "set_attn_implementation"):
        return "not a Hugging Face transformers model"
    current = getattr(config, "_attn_implementation", None)
    if current == "sdpa":
        return "already uses fused attention (attn_implementation='sdpa', the transformers default)"
    return None


def _sdpa_apply(loaded, device):
    before = getattr(loaded.module.config, "_attn_implementation", None)
    loaded.module.set_attn_implementation("sdpa")
    return outcome(loaded, details={"from": before, "to": "sdpa"})


register(Pass("conv-bn-fold", "compilation & fusion", "Fold BatchNorm into the preceding convolution's weights "
              "(one op instead of two at inference).", ("cpu", "cuda"), _fold_apply, _fold_check))
register(Pass("sdpa", "compilation & fusion", "Switch a Hugging Face model to fused attention "
              "(attn_implementation='sdpa', torch's scaled_dot_product_attention).", ("cpu", "cuda"), _sdpa_apply,
              _sdpa_check, group="attention"))
