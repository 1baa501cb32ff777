"""The Pass plug-in, its registry, and the pipeline that applies passes in order without touching the original.

A pass is a small plug-in: name, family, description, the devices it runs on, `check(model, device)` returning the
reason it does not apply (None when it does), and `apply(model, device)` returning the changed model. The pipeline
deep-copies the model once before the first pass, so passes may change what they are given in place and the
caller's (cached) original is never touched.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch

from profiler.loading import LoadedModel
from profiler.schema import OpLensError, PassResult, error_line


class PassNotApplicable(OpLensError):
    """Raised by a pass that finds, while applying, that it cannot apply; the message says why."""


class UnknownPassError(OpLensError):
    """A pass name that is not in the registry."""


class PassConflictError(OpLensError):
    """A pipeline combining passes that cannot go together."""


Check = Callable[[LoadedModel, torch.device], "str | None"]
Apply = Callable[[LoadedModel, torch.device], LoadedModel]


@dataclass(frozen=True)
class Pass:
    name: str
    family: str  # "compilation & fusion", "precision", "quantization", "structure", "memory & layout", "runtime"
    description: str
    devices: tuple[str, ...]
    apply_fn: Apply
    check_fn: Check | None = None
    group: str = ""  # a pipeline holds at most one pass of a group (one precision, one quantization, ...)
    terminal: bool = False  # compiles or freezes the model: nothing can follow it
    # passes whose speed shows only once one of these follows (static int8 is lowered by a compiler): the search
    # tries that pair even when this pass alone is slower
    pays_off_with: tuple[str, ...] = ()

    def check(self, loaded: LoadedModel, device: torch.device) -> str | None:
        if device.type not in self.devices:
            return f"{self.name} runs on {' or '.join(self.devices)} only, not on {device.type}"
        return self.check_fn(loaded, device) if self.check_fn else None

    def apply(self, loaded: LoadedModel, device: torch.device) -> LoadedModel:
        return self.apply_fn(loaded, device)


REGISTRY: dict[str, Pass] = {}


def register(p: Pass) -> Pass:
    REGISTRY[p.name] = p
    return p


def get(name: str) -> Pass:
    if name not in REGISTRY:
        raise UnknownPassError(f"unknown pass '{name}'; known passes: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def conflicts(names: list[str]) -> list[str]:
    """Reasons why this ordered pipeline cannot run; empty when it can."""
    passes = [get(n) for n in names]
    problems = []
    seen: dict[str, str] = {}
    for p in passes:
        if not p.group:
            continue
        if p.group in seen:
            problems.append(f"{seen[p.group]} and {p.name} are both {p.group} passes; choose one")
        else:
            seen[p.group] = p.name
    if len(set(names)) != len(names):
        problems.append("a pass is listed twice")
    for i, p in enumerate(passes[:-1]):
        if p.terminal:
            problems.append(
                f"{p.name} compiles the model, so it must come last (it is followed by {passes[i + 1].name})"
            )
    return problems


def applicability(loaded: LoadedModel, device: torch.device) -> list[dict]:
    """Every registered pass, whether it applies to this model on this device, and why not: one row per pass."""
    rows = []
    for p in REGISTRY.values():
        why = p.check(loaded, device)
        rows.append({"pass": p.name, "family": p.family, "applies": why is None, "why not": why or "",
                     "description": p.description})
    return rows


def float_params(loaded: LoadedModel) -> list[torch.Tensor]:
    return [p for p in loaded.module.parameters() if p.is_floating_point()]


def weight_dtype(loaded: LoadedModel) -> torch.dtype | None:
    """The dtype of the model's floating-point weights (of the first one), None when it has none."""
    params = float_params(loaded)
    return params[0].dtype if params else None


def with_module(loaded: LoadedModel, module: torch.nn.Module, **changes) -> LoadedModel:
    """A LoadedModel with a new module (and optionally new args/kwargs/options), sharing the rest."""
    return dataclasses.replace(loaded, module=module, **changes)


def private_copy(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    module = copy.deepcopy(loaded.module).to(device)
    return dataclasses.replace(loaded, module=module, info=copy.copy(loaded.info), options=dict(loaded.options))


def apply_pipeline(loaded: LoadedModel, names: list[str], device: torch.device,
                   progress: Callable[[str], None] | None = None,
                   stop_at_refusal: bool = False,
                   tolerance: dict | None = None) -> tuple[LoadedModel, list[PassResult]]:
    """Apply passes in order to a private copy; a pass that does not apply is skipped with its reason, or, with
    `stop_at_refusal` (the search, which discards such a pipeline anyway), ends the pipeline there. `tolerance`
    ({"min_cosine", "min_top1"}) is the one the result will be judged by, for passes that tune themselves to it."""
    problems = conflicts(names)
    if problems:
        raise PassConflictError("; ".join(problems))
    current = private_copy(loaded, device)
    current.options.update(tolerance or {})
    results: list[PassResult] = []
    for name in names:
        p = get(name)
        reason = p.check(current, device)
        if not reason:
            if progress:
                progress(f"applying {name}")
            t0 = time.perf_counter()
            try:
                changed = p.apply(current, device)
            except PassNotApplicable as exc:
                reason = str(exc) or "does not apply to this model"  # never empty: it marks the refusal below
            except Exception as exc:  # noqa: BLE001 - a pass failing on this model is reported, the pipeline goes on
                reason = f"failed on this model: {error_line(exc)}"
        if reason:
            results.append(PassResult(name=name, applied=False, reason=reason))
            if stop_at_refusal:
                break
            continue
        details = changed.options.pop("_details", {}) if changed.options else {}
        warnings = changed.options.pop("_warnings", []) if changed.options else []
        results.append(PassResult(name=name, applied=True, apply_s=time.perf_counter() - t0, details=details,
                                  warnings=warnings))
        current = changed
    return current, results


def note(loaded: LoadedModel, details: dict | None = None, warning: str | None = None) -> LoadedModel:
    """Attach details/warnings for the pipeline to put in this pass's PassResult."""
    if details:
        loaded.options.setdefault("_details", {}).update(details)
    if warning:
        loaded.options.setdefault("_warnings", []).append(warning)
    return loaded
