"""Two disjoint input sets per model: one to calibrate on, one held out to judge accuracy on.

A quantized model checked on the inputs it was calibrated on proves little, so every pass that calibrates uses the
calibration set and every accuracy proof uses the held-out set. Text models with real sentences get real sentences
(two lists that share none); any other model gets other random draws of its example inputs' shapes (other seeds).
Each set is a list of batches shaped like the example inputs, so a model exported for that shape runs them too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from profiler.models.loaded import LoadedModel
from profiler.schema import Accuracy

from .validate import MIN_COSINE, MIN_TOP1, compare_outputs, primary_tensor

Batch = tuple[tuple, dict]  # (args, kwargs) as the model takes them


@dataclass
class InputSets:
    calibration: list[Batch]
    held_out: list[Batch]
    calibration_name: str
    held_out_name: str
    real: bool = False  # real data (sentences), not random draws

    def describe(self) -> str:
        return f"held-out: {self.held_out_name}; calibration (disjoint): {self.calibration_name}"


def _chunks(items: list[str], size: int) -> list[list[str]]:
    """Batches of `size`; the last one is filled up from the start of the list so every batch has the example shape."""
    out = [items[i:i + size] for i in range(0, len(items), size)]
    out[-1] = (out[-1] + items * size)[:size]
    return out


def _minilm_sets(loaded: LoadedModel) -> InputSets:
    from sample_models import builders as b

    batch, seq = loaded.batch_size, loaded.seq_len
    held = b.MINILM_SENTENCES + b.MINILM_HELD_OUT_SENTENCES
    encode = lambda sentences: [((), b.minilm_inputs(batch, seq, s)) for s in _chunks(sentences, batch)]
    return InputSets(encode(b.MINILM_CALIBRATION_SENTENCES), encode(held),
                     f"{len(b.MINILM_CALIBRATION_SENTENCES)} real sentences (MINILM_CALIBRATION_SENTENCES)",
                     f"{len(held)} other real sentences (MINILM_SENTENCES + MINILM_HELD_OUT_SENTENCES)", real=True)


def _draw(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Another random tensor like `t`: same shape, dtype and range; masks and constant tensors are kept as they are
    (a random attention mask or token-type row would be a different kind of input, not another draw)."""
    if t.is_floating_point():
        std = float(t.float().std()) if t.numel() > 1 else 1.0
        x = torch.randn(t.shape, generator=g) * (std or 1.0) + float(t.float().mean())
        return x.to(t.dtype)
    if t.dtype == torch.bool or t.numel() == 0:
        return t
    lo, hi = int(t.min()), int(t.max())
    if hi - lo <= 1:  # constant or 0/1 (attention masks, token types)
        return t
    return torch.randint(lo, hi + 1, t.shape, generator=g, dtype=t.dtype)


def _drawn(loaded: LoadedModel, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    flat, spec = torch.utils._pytree.tree_flatten((loaded.args, loaded.kwargs))
    cpu = [_draw(x.cpu(), g) if isinstance(x, torch.Tensor) else x for x in flat]
    return torch.utils._pytree.tree_unflatten(cpu, spec)


CALIBRATION_SEEDS, HELD_OUT_SEEDS = (1, 2), (1001,)


def _random_sets(loaded: LoadedModel) -> InputSets:
    return InputSets([_drawn(loaded, s) for s in CALIBRATION_SEEDS],
                     [(loaded.args, loaded.kwargs)] + [_drawn(loaded, s) for s in HELD_OUT_SEEDS],
                     f"{len(CALIBRATION_SEEDS)} random draws of the example shapes (seeds "
                     f"{', '.join(map(str, CALIBRATION_SEEDS))})",
                     f"the example inputs + {len(HELD_OUT_SEEDS)} random draw(s) of their shapes (seeds "
                     f"{', '.join(map(str, HELD_OUT_SEEDS))})")


# models whose loader knows real inputs: name -> the two sets; everything else gets random draws
_REAL_SETS: dict[str, Callable[[LoadedModel], InputSets]] = {"minilm": _minilm_sets, "minilm-tiny": _minilm_sets}


def input_sets(loaded: LoadedModel) -> InputSets:
    """The calibration and held-out sets for this model (see the module docstring)."""
    return _REAL_SETS.get(loaded.info.spec if loaded.info else "", _random_sets)(loaded)


def conform(batch: Batch, like: LoadedModel) -> Batch:
    """`batch` as `like` takes its inputs: a pass may have cast them (bf16), moved them or made them channels_last."""
    flat, spec = torch.utils._pytree.tree_flatten(batch)
    ref, ref_spec = torch.utils._pytree.tree_flatten((like.args, like.kwargs))
    if ref_spec != spec:
        return batch
    out = []
    for x, e in zip(flat, ref):
        if isinstance(x, torch.Tensor) and isinstance(e, torch.Tensor):
            x = x.to(device=e.device, dtype=e.dtype)
            if x.dim() == 4 and e.is_contiguous(memory_format=torch.channels_last) and not e.is_contiguous():
                x = x.contiguous(memory_format=torch.channels_last)
        out.append(x)
    return torch.utils._pytree.tree_unflatten(out, spec)


def outputs_on(loaded: LoadedModel, batches: list[Batch], device: torch.device | None = None) -> Any:
    """The model's answer tensors on every batch, joined along the batch dimension (None when it has none)."""
    parts = []
    with torch.inference_mode():
        for batch in batches:
            args, kwargs = conform(batch, loaded)
            if device is not None:
                args, kwargs = torch.utils._pytree.tree_map(
                    lambda x: x.to(device) if isinstance(x, torch.Tensor) else x, (args, kwargs))
            t = primary_tensor(loaded.module(*args, **kwargs))
            if t is None:
                return None
            parts.append(t.detach().float().cpu())
    return torch.cat([p if p.dim() else p.reshape(1) for p in parts])


def held_out_accuracy(reference: torch.Tensor | None, candidate: LoadedModel, sets: InputSets, task: str = "",
                      min_cosine: float = MIN_COSINE, min_top1: float = MIN_TOP1,
                      device: torch.device | None = None) -> Accuracy:
    """`candidate` against the reference outputs on the held-out set (reference = outputs_on(original, held_out)),
    saying which sets were used."""
    acc = compare_outputs(reference, outputs_on(candidate, sets.held_out, device), task, min_cosine, min_top1)
    acc.inputs = sets.describe()
    return acc
