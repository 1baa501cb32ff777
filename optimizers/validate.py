"""Compare a model's outputs before and after optimization on the same inputs."""
from __future__ import annotations

from typing import Any

import torch

from profiler.schema import Accuracy

MIN_COSINE, MIN_TOP1 = 0.999, 0.99  # the default tolerance: a result outside it is marked failing


def primary_tensor(out: Any) -> torch.Tensor | None:
    """The tensor that carries the answer: logits, an embedding, or the first tensor found."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "keys"):
        for key in ("logits", "last_hidden_state", "pooler_output"):
            if key in out.keys() and isinstance(out[key], torch.Tensor):
                return out[key]
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for item in out:
            t = primary_tensor(item)
            if t is not None:
                return t
    return None


def compare_outputs(reference: Any, candidate: Any, task: str = "", min_cosine: float = MIN_COSINE,
                    min_top1: float = MIN_TOP1) -> Accuracy:
    a, b = primary_tensor(reference), primary_tensor(candidate)
    if a is None or b is None:
        return Accuracy(max_abs_err=float("inf"), rel_err=float("inf"), cosine=0.0, top1_agreement=None, passed=False,
                        note="no tensor output to compare")
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    if a.shape != b.shape:
        return Accuracy(max_abs_err=float("inf"), rel_err=float("inf"), cosine=0.0, top1_agreement=None, passed=False,
                        note=f"output shape changed from {list(a.shape)} to {list(b.shape)}")
    diff = (a - b).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    rel = max_abs / max(float(a.abs().max()), 1e-12) if a.numel() else 0.0
    if task == "sentence-embedding" and a.dim() == 2:  # each row is a sentence: the worst sentence decides
        cosine = float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12).min())
    else:  # the whole output as one vector (a 2-class logit row is too short for a per-row cosine to mean much)
        cosine = float(
            torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0, eps=1e-12)
        )
    classifier = task in ("text-classification", "image-classification", "classification", "text-generation") \
        and a.dim() >= 2 and a.shape[-1] > 1
    top1 = float((a.argmax(-1) == b.argmax(-1)).float().mean()) if classifier else None
    passed = cosine >= min_cosine and (top1 is None or top1 >= min_top1) and bool(torch.isfinite(b).all())
    kind = "sentence-embedding" if task == "sentence-embedding" else ("logits" if classifier else "output")
    return Accuracy(max_abs_err=max_abs, rel_err=rel, cosine=cosine, top1_agreement=top1, passed=passed, kind=kind,
                    note="" if passed else f"outside tolerance (cosine >= {min_cosine}"
                                           + (f", top-1 agreement >= {min_top1:.0%}" if top1 is not None else "") + ")")
