"""The Pass plug-in, its registry, and the pipeline that applies passes in order without touching the original.

A pass is a small plug-in: name, family, description, the devices it runs on, `check(model, device)` returning the
reason it does not apply (None when it does), and `apply(model, device)` returning an Outcome: the changed model
with its new traits, details and warnings. Checks read the model's traits (profiler.models.loaded), never attributes
hung on the module. The pipeline deep-copies the model once before the first pass, so passes may change what they are
given in place and the caller's (cached) original is never touched.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from profiler import devices
from profiler.models.loaded import LoadedModel
from profiler.schema import OpLensError, PassResult, error_line

from .validate import MIN_COSINE, MIN_TOP1


class PassNotApplicable(OpLensError):
    """Raised by a pass that finds, while applying, that it cannot apply; the message says why."""


class UnknownPassError(OpLensError):
    """A pass name that is not in the registry."""


class PassConflictError(OpLensError):
    """A pipeline combining passes that cannot go together."""


# Where each family's passes go in a pipeline the search grows: reshape the model, swap its attention or fold its
# layers, lower its precision, quantize, lay out memory, set the runtime. A terminal pass (COMPILE group) comes after
# all of them.
FAMILY_STAGE = {"structure": 0, "compilation & fusion": 1, "precision": 2, "quantization": 3, "memory & layout": 4,
                "runtime": 5}
COMPILE = "compile"  # the group of passes that compile or freeze the model: nothing can follow them


@dataclass
class Outcome:
    """What a pass returns: the changed model (module, inputs, traits, run options), what it did, and its caveats."""

    loaded: LoadedModel
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


Check = Callable[[LoadedModel, torch.device], "str | None"]
Apply = Callable[..., Outcome]  # (loaded, device) or, with Pass.tuned, (loaded, device, tolerance)


@dataclass(frozen=True)
class Tolerance:
    """The accuracy a pipeline's result will be judged by, for passes that tune themselves to it."""

    min_cosine: float = MIN_COSINE
    min_top1: float = MIN_TOP1


@dataclass(frozen=True)
class Pass:
    """One pass and the one description of it that the pipeline, the conflict check and the search all read."""

    name: str
    family: str  # a key of FAMILY_STAGE: what the pass does, and so where it goes in a pipeline
    description: str
    devices: tuple[str, ...]
    apply_fn: Apply
    check_fn: Check | None = None
    group: str = ""  # a pipeline holds at most one pass of a group (one precision, one quantization, ...)
    # passes whose speed shows only once one of these follows (static int8 is lowered by a compiler): the search
    # tries that pair even when this pass alone is slower
    pays_off_with: tuple[str, ...] = ()
    tuned: bool = False  # apply_fn takes the Tolerance the result will be judged by
    per_layer: bool = False  # tunes itself with forward passes per layer: minutes on a large model
    # the low precision ("bf16", "fp16") its CPU kernels compute in: a CPU without instructions for it emulates
    # them (converting to fp32 and back around each op), and the pass is then marked, warned and left out of searches
    precision: str = ""

    def __post_init__(self):
        if self.family not in FAMILY_STAGE:
            raise ValueError(f"pass {self.name}: family '{self.family}' is not one of {', '.join(FAMILY_STAGE)}")
        if self.name in self.pays_off_with:
            raise ValueError(f"pass {self.name} cannot pay off with itself")

    @property
    def terminal(self) -> bool:
        """Compiles or freezes the model: nothing can follow it."""
        return self.group == COMPILE

    @property
    def position(self) -> tuple[bool, int]:
        """Sort key of the pass in a pipeline: terminal passes last, the rest by their family's stage."""
        return self.terminal, FAMILY_STAGE[self.family]

    def emulated(self, device: torch.device) -> str | None:
        """Why this pass will likely be slower here (its precision has no instructions on this CPU); None when not."""
        if (device.type != "cpu" or device.type not in self.devices
                or self.precision not in devices.emulated_precisions()):
            return None
        return f"this CPU has no {self.precision} instructions; expect a slowdown"

    def check(self, loaded: LoadedModel, device: torch.device) -> str | None:
        if device.type not in self.devices:
            return f"{self.name} runs on {' or '.join(self.devices)} only, not on {device.type}"
        return self.check_fn(loaded, device) if self.check_fn else None

    def apply(self, loaded: LoadedModel, device: torch.device, tolerance: Tolerance | None = None) -> Outcome:
        if self.tuned:
            return self.apply_fn(loaded, device, tolerance or Tolerance())
        return self.apply_fn(loaded, device)


REGISTRY: dict[str, Pass] = {}


def register(p: Pass) -> Pass:
    REGISTRY[p.name] = p
    return p


def get(name: str) -> Pass:
    if name not in REGISTRY:
        raise UnknownPassError(f"unknown pass '{name}'; known passes: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def description_problems(registry: dict[str, Pass] | None = None) -> list[str]:
    """Where pass descriptions disagree with one another: a partner a pass pays off with that is not registered, or
    that a pipeline would put before it (the search grows pipelines in Pass.position order). Empty when none do."""
    registry = REGISTRY if registry is None else registry
    problems = []
    for p in registry.values():
        for partner in p.pays_off_with:
            if partner not in registry:
                problems.append(f"{p.name} pays off with {partner}, which is not a registered pass")
            elif registry[partner].position <= p.position:
                problems.append(f"{p.name} pays off with {partner} following it, but {partner}'s family "
                                f"({registry[partner].family}) puts it no later than {p.name} ({p.family})")
    return problems


def conflicts(names: list[str]) -> list[str]:
    """Reasons why this ordered pipeline of registered passes cannot run; empty when it can."""
    return pipeline_conflicts([get(n) for n in names], names)


def pipeline_conflicts(passes: list[Pass], names: list[str] | None = None) -> list[str]:
    """Reasons why this ordered pipeline (`names`, by default the passes' own) cannot run, read from the passes'
    descriptions; empty when it can."""
    names = [p.name for p in passes] if names is None else names
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
                     "emulated here": p.emulated(device) or "", "description": p.description})
    return rows


def outcome(loaded: LoadedModel, module: torch.nn.Module | None = None, details: dict | None = None,
            warning: str | None = None, traits: dict | None = None, **changes) -> Outcome:
    """A pass's Outcome: `loaded` with a new module (or the same one, changed in place), new traits (`traits`: the
    fields to set) and any other LoadedModel field in `changes` (args, kwargs). The graph the model was exported as
    is dropped: the pass changed the model, so it no longer describes it; so is a compile target, unless the pass
    kept the module itself (a wrapper or a new module would be lost by compiling the old target)."""
    replaced = module is not None and module is not loaded.module
    kept = {"exported": None, **({"compile_target": None} if replaced else {}), **(traits or {})}
    changed = dataclasses.replace(loaded, module=module if replaced else loaded.module,
                                  traits=dataclasses.replace(loaded.traits, **kept), **changes)
    return Outcome(changed, dict(details or {}), [warning] if warning else [])


def private_copy(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    """A copy whose module (and the graph it offers a compiler) passes may change in place."""
    # copied together, so that weights the two share stay shared in the copy
    module, target = copy.deepcopy((loaded.module, loaded.traits.compile_target))
    traits = dataclasses.replace(loaded.traits, compile_target=target)
    return dataclasses.replace(loaded, module=module.to(device), info=copy.copy(loaded.info), traits=traits)


def run_pass(p: Pass, current: LoadedModel, device: torch.device, tolerance: Tolerance | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[LoadedModel, PassResult]:
    """Check and apply one pass: the model it leaves (`current` when it did not apply) and its PassResult, whose
    reason says why not. A pass failing on this model is a result, never an exception."""
    reason = p.check(current, device)
    if reason:
        return current, PassResult(name=p.name, applied=False, reason=reason)
    if progress:
        progress(f"applying {p.name}")
    t0 = time.perf_counter()
    try:
        out = p.apply(current, device, tolerance)
    except PassNotApplicable as exc:
        reason = str(exc) or "does not apply to this model"  # never empty: it marks the refusal
    except Exception as exc:  # noqa: BLE001 - a pass failing on this model is reported, the pipeline goes on
        reason = f"failed on this model: {error_line(exc)}"
    if reason:
        return current, PassResult(name=p.name, applied=False, reason=reason)
    emulated = p.emulated(device)
    warnings = ([emulated] if emulated else []) + out.warnings
    return out.loaded, PassResult(name=p.name, applied=True, apply_s=time.perf_counter() - t0, details=out.details,
                                  warnings=warnings)


def apply_pipeline(loaded: LoadedModel, names: list[str], device: torch.device,
                   progress: Callable[[str], None] | None = None,
                   stop_at_refusal: bool = False,
                   tolerance: Tolerance | None = None) -> tuple[LoadedModel, list[PassResult]]:
    """Apply passes in order to a private copy; a pass that does not apply is skipped with its reason, or, with
    `stop_at_refusal` (the search, which discards such a pipeline anyway), ends the pipeline there. `tolerance` is
    the one the result will be judged by, for passes that tune themselves to it."""
    problems = conflicts(names)
    if problems:
        raise PassConflictError("; ".join(problems))
    current = private_copy(loaded, device)
    results: list[PassResult] = []
    for name in names:
        current, result = run_pass(get(name), current, device, tolerance, progress)
        results.append(result)
        if not result.applied and stop_at_refusal:
            break
    return current, results
