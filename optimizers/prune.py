"""Pruning: unstructured magnitude pruning (honest: dense kernels get no faster) and structured pruning that really
removes feed-forward neurons, so the matrices shrink."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from .base import Pass, outcome, register

AMOUNT = 0.5  # unstructured: half of each weight matrix
STRUCTURED_AMOUNT = 0.25  # structured: a quarter of the feed-forward neurons


def _prunable(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _magnitude_check(loaded, device):
    return None if _prunable(loaded.module) else "no nn.Linear or nn.Conv2d weights to prune"


def _magnitude_apply(loaded, device):
    layers = _prunable(loaded.module)
    for m in layers:
        prune.l1_unstructured(m, "weight", amount=AMOUNT)
        prune.remove(m, "weight")  # bake the zeros in: a plain dense weight again
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    return outcome(loaded, details={"sparsity": zeros / total, "layers": len(layers)},
                   warning="unstructured zeros stay in dense matrices: dense kernels get no faster and the stored "
                           "size is unchanged; it pays only with sparse kernels or compressed storage")


def _ffn_pairs(module: nn.Module) -> list[tuple[nn.Linear, nn.Linear, str]]:
    """Linear pairs around a feed-forward hidden layer: (expand, project, where). Known layouts: transformers'
    BERT/ViT-style intermediate.dense -> output.dense, DistilBERT ffn.lin1 -> ffn.lin2, and Linear-act-Linear in an
    nn.Sequential."""
    pairs = []
    for name, m in module.named_modules():
        inter, out = getattr(m, "intermediate", None), getattr(m, "output", None)
        if isinstance(getattr(inter, "dense", None), nn.Linear) and isinstance(getattr(out, "dense", None), nn.Linear):
            if inter.dense.out_features == out.dense.in_features:
                pairs.append((inter.dense, out.dense, name))
        ffn = getattr(m, "ffn", None)
        if isinstance(getattr(ffn, "lin1", None), nn.Linear) and isinstance(getattr(ffn, "lin2", None), nn.Linear):
            pairs.append((ffn.lin1, ffn.lin2, name))
        if isinstance(m, nn.Sequential):
            kids = list(m.children())
            for i in range(len(kids) - 2):
                a, act, b = kids[i], kids[i + 1], kids[i + 2]
                if isinstance(a, nn.Linear) and isinstance(b, nn.Linear) and not isinstance(act, nn.Linear) \
                        and len(list(act.parameters())) == 0 and a.out_features == b.in_features:
                    pairs.append((a, b, f"{name}[{i}]"))
    return pairs


def _shrink(a: nn.Linear, b: nn.Linear, keep: torch.Tensor) -> None:
    """Keep hidden units `keep`: rows of a (and its bias), columns of b. In place, so parents need no rewiring."""
    with torch.no_grad():
        a.weight = nn.Parameter(a.weight[keep].clone())
        if a.bias is not None:
            a.bias = nn.Parameter(a.bias[keep].clone())
        b.weight = nn.Parameter(b.weight[:, keep].clone())
    a.out_features = b.in_features = int(keep.numel())


def _structured_check(loaded, device):
    return (
        None
        if _ffn_pairs(loaded.module)
        else (
            "no feed-forward Linear pairs found (supported: transformers "
            "BERT/ViT/DistilBERT layers, Linear-activation-Linear in nn.Sequential)"
        )
    )


def _structured_apply(loaded, device):
    pairs = _ffn_pairs(loaded.module)
    removed = 0
    for a, b, _ in pairs:
        # importance of a hidden unit: the L1 norm of the weights into it times the weights out of it
        score = a.weight.abs().sum(1) * b.weight.abs().sum(0)
        n_keep = max(1, int(round(a.out_features * (1 - STRUCTURED_AMOUNT))))
        keep = torch.sort(torch.topk(score, n_keep).indices).values
        removed += a.out_features - n_keep
        _shrink(a, b, keep)
    return outcome(loaded, details={"ffn_blocks": len(pairs), "neurons_removed": removed,
                                    "fraction": STRUCTURED_AMOUNT},
                   warning="removing neurons changes the model: without fine-tuning, accuracy usually drops")


register(Pass("magnitude-prune", "structure", f"Unstructured L1 pruning of {AMOUNT:.0%} of each Linear/Conv weight. "
              "Shows sparsity; honest note: dense kernels get no faster.", ("cpu", "cuda"), _magnitude_apply,
              _magnitude_check, group="pruning"))
register(Pass("structured-prune", "structure", f"Remove {STRUCTURED_AMOUNT:.0%} of feed-forward neurons (lowest "
              "weight magnitude): the matrices really shrink.", ("cpu", "cuda"), _structured_apply, _structured_check,
              group="pruning"))
