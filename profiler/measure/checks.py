"""Sanity checks on the first inference: inputs and outputs that make a measurement suspect.

A model fed empty tensors, or one whose outputs are NaN, still times fine; these checks put that on the run
instead of letting it look like a valid measurement.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

import torch


def _tensors(obj: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor in nested tuples, lists, dicts and HF ModelOutputs."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, Mapping) or hasattr(obj, "items"):
        for k, v in obj.items():
            yield from _tensors(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{path}[{i}]")


def input_warnings(args: tuple, kwargs: dict) -> list[str]:
    """One warning per input tensor with a zero-size dimension (the model would be timed on no data)."""
    named = list(_tensors(tuple(args), "arg")) + list(_tensors(dict(kwargs), ""))
    return [f"input {name} has shape {list(t.shape)}: a zero-size dimension, so the model runs on no data; "
            "check the batch size and sequence length" for name, t in named if 0 in t.shape]


def output_warnings(output: Any) -> list[str]:
    """One warning per floating-point output tensor holding NaN or Inf."""
    out = []
    for name, t in _tensors(output, "output"):
        if not t.is_floating_point() or t.numel() == 0:
            continue
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        if nan or inf:
            what = " and ".join(x for x in (f"{nan:,} NaN" if nan else "", f"{inf:,} Inf" if inf else "") if x)
            out.append(f"{name} holds {what} of {t.numel():,} values: the model's results are not usable, "
                       "so its timing may not be either")
    return out
