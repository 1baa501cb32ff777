"""Low-rank factorisation: replace a Linear W (out x in) by two thinner Linears from its truncated SVD, with the rank
chosen by retained energy (sum of squared singular values); layers that would not shrink are left alone."""
from __future__ import annotations

import torch
from torch import nn

from .base import Pass, PassNotApplicable, outcome, register

ENERGY = 0.90  # keep the smallest rank holding this share of the squared singular values
MAX_COST = 0.8  # factorise only when the two factors cost at most this share of the original multiply


class LowRankLinear(nn.Module):
    def __init__(self, first: nn.Linear, second: nn.Linear):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return self.second(self.first(x))


def factorise(linear: nn.Linear, energy: float = ENERGY) -> LowRankLinear | None:
    w = linear.weight.detach().float()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    cumulative = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    rank = int(torch.searchsorted(cumulative, torch.tensor(energy)).item()) + 1
    out_f, in_f = w.shape
    if rank * (in_f + out_f) > MAX_COST * in_f * out_f:
        return None
    first = nn.Linear(in_f, rank, bias=False)
    second = nn.Linear(rank, out_f, bias=linear.bias is not None)
    root = s[:rank].sqrt()
    with torch.no_grad():
        first.weight.copy_((root[:, None] * vh[:rank]).to(linear.weight.dtype))
        second.weight.copy_((u[:, :rank] * root[None, :]).to(linear.weight.dtype))
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return LowRankLinear(first, second)


def _targets(module: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    return [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear) and min(child.in_features, child.out_features) >= 32]


def _check(loaded, device):
    return None if _targets(loaded.module) else "no nn.Linear layers of at least 32x32 to factorise"


def _apply(loaded, device):
    done, ranks = 0, []
    for parent, name, linear in _targets(loaded.module):
        replacement = factorise(linear)
        if replacement is not None:
            setattr(parent, name, replacement)
            done += 1
            ranks.append(replacement.first.out_features)
    if not done:
        raise PassNotApplicable(f"no layer keeps {ENERGY:.0%} of its energy at a rank that saves work (random or "
                                "full-rank weights have flat spectra)")
    return outcome(loaded, details={"layers_factorised": done, "energy": ENERGY, "ranks": sorted(set(ranks))[:10]},
                   warning="a truncated SVD changes the model: check accuracy, fine-tune if it drops")


register(Pass("lowrank-svd", "structure", f"Factorise Linear layers by truncated SVD, keeping {ENERGY:.0%} of the "
              "spectral energy, where that cuts the multiply's cost.", ("cpu", "cuda"), _apply, _check,
              group="lowrank"))
