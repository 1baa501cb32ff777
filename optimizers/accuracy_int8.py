"""Accuracy-aware int8: quantize the Linear layers that the output tolerates, keep the rest in float.

The idea of Intel Neural Compressor's accuracy-driven tuning, with its measurements shown: each Linear's sensitivity
is the output error (1 - cosine against fp32, see validate.compare_outputs) when it alone is int8, measured on the
calibration set. Layers are then quantized from least to most sensitive, by bisection on how many, as long as the
calibration outputs stay within the tolerance; the rest stay float and the result says why, with their numbers.
Quantized layers are per-channel dynamic int8 (fbgemm), as in the dynamic-int8 pass, with full 8-bit activations
where this CPU computes them exactly (quantize.FullRangeLinear).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd

from profiler.models.loaded import LoadedModel

from .base import Pass, Tolerance, outcome, register
from .calibration import input_sets, outputs_on
from .checks import count_modules, float32_reason
from .quantize import ACTIVATIONS, FullRangeLinear, full_range_exact
from .validate import MIN_COSINE, MIN_TOP1, compare_outputs

# Layers are chosen so that the calibration error stays under this share of the allowed error (1 - min_cosine):
# held-out inputs can be worse than the ones the choice was made on. Real MiniLM at 0.99, 36 of 37 layers int8:
# calibration 1 - worst cosine 0.0070, held-out 0.0078 (1.12x); 0.8 leaves room for 1.25x.
MARGIN = 0.8


def _with_qconfig(linear: nn.Linear) -> nn.Linear:
    linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    return linear


def _quantize_one(linear: nn.Linear, full_range: bool) -> nn.Module:
    """One Linear as per-channel dynamic int8, built once and swapped in and out while searching."""
    cls = FullRangeLinear if full_range else nnqd.Linear
    q = cls.from_float(_with_qconfig(linear))
    del linear.qconfig  # the float layer may stay in the model: leave it as it was
    return q


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    owner, _, attr = name.rpartition(".")
    setattr(model.get_submodule(owner) if owner else model, attr, module)


def plan(model: nn.Module, calibration: list, task: str, min_cosine: float = MIN_COSINE,
         min_top1: float = MIN_TOP1, margin: float = MARGIN) -> dict:
    """Measure each Linear's sensitivity on `calibration` and choose which to quantize. Leaves `model` with exactly
    the chosen layers quantized (in place) and returns what was measured."""
    run = lambda: outputs_on(LoadedModel(module=model, args=calibration[0][0], kwargs=calibration[0][1]), calibration)
    reference = run()
    floats = {n: m for n, m in model.named_modules() if type(m) is nn.Linear}
    full_range = full_range_exact()
    ints = {n: _quantize_one(m, full_range) for n, m in floats.items()}
    # the tolerance with the margin, as compare_outputs checks it
    target = 1 - (1 - min_cosine) * margin
    check = lambda: compare_outputs(reference, run(), task, target, min_top1)

    sensitivity = {}
    for name in floats:
        _swap(model, name, ints[name])
        sensitivity[name] = 1 - check().cosine
        _swap(model, name, floats[name])
    order = sorted(floats, key=lambda n: sensitivity[n])

    def choose(k: int) -> None:
        """Quantize the k least sensitive layers, only them."""
        for i, name in enumerate(order):
            _swap(model, name, ints[name] if i < k else floats[name])

    def fits(k: int) -> tuple[bool, float, str]:
        choose(k)
        acc = check()
        top1 = f" (top-1 agreement {acc.top1_agreement:.1%})" if acc.top1_agreement is not None else ""
        return acc.passed, acc.cosine, f"calibration cosine {acc.cosine:.5f}{top1}"

    # bisection on how many: the error grows with each layer added (not strictly, so this finds a k that passes
    # whose k+1 fails, not always the largest such k)
    lo, hi, tried = 0, len(order), {0: (True, 1.0, "")}
    tried[hi] = fits(hi)
    if not tried[hi][0]:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            tried[mid] = fits(mid)
            lo, hi = (mid, hi) if tried[mid][0] else (lo, mid)
        k = lo
    else:
        k = hi
    choose(k)  # leave the model as chosen
    breaker = order[k] if k < len(order) else None
    kept = []
    for rank, name in enumerate(reversed(order[k:]), 1):
        why = (f"with the {k} less sensitive layers it gave {tried[k + 1][2]}, outside the tolerance "
               f"(cosine >= {target:.6g}" + (f", top-1 >= {min_top1:.0%})" if "top-1" in tried[k + 1][2] else ")")
               if name == breaker and k + 1 in tried else
               f"more sensitive than {breaker}, the first layer the tolerance could not take")
        kept.append({"layer": name, "sensitivity": round(sensitivity[name], 6), "rank": rank, "why": why})
    return {"layers_quantized": k, "layers_total": len(order), "kept_float": kept,
            "activations": ACTIVATIONS[full_range],
            "calibration_cosine": round(tried[k][1], 6), "target_cosine": min_cosine,
            "calibration_target_cosine": round(target, 6),
            "evaluations": len(floats) + len(tried),  # the reference, each layer alone, the bisection steps
            "sensitivity": {n: round(s, 6) for n, s in sorted(sensitivity.items(), key=lambda kv: -kv[1])}}


def _check(loaded, device):
    if not count_modules(loaded, nn.Linear):
        return "no nn.Linear modules to quantize (a TorchScript or exported model hides them)"
    return float32_reason(loaded)


def _apply(loaded, device, tolerance: Tolerance):
    sets = input_sets(loaded)
    found = plan(loaded.module, sets.calibration, loaded.info.task if loaded.info else "", tolerance.min_cosine,
                 tolerance.min_top1)
    found.update(calibration=sets.calibration_name, held_out=sets.held_out_name,
                 weights="int8, per output channel (dynamic activations)")
    if found["layers_quantized"] == 0:
        return outcome(loaded, details=found,
                       warning="no Linear layer could be quantized within the tolerance: the model is unchanged")
    return outcome(loaded, details=found, traits={"int8": "dynamic"})


register(Pass("accuracy-int8", "quantization", "Accuracy-aware dynamic int8: measures each Linear's sensitivity "
              "on a calibration set, quantizes from least to most sensitive while the outputs stay within the "
              "tolerance, keeps the rest in float and lists them with their numbers.", ("cpu",), _apply, _check,
              group="quantization", tuned=True, per_layer=True))
