"""What each kind of job is: where its function lives, how long it may take, whether it measures (and so waits in
the machine's one queue), and what it saves, in order, so a cancel or a failure can say what was kept.

Job functions register themselves with `@job(kind)` in the module that holds them. The table names that module so
`function(kind)` can import it on first use: the profiler never imports the optimizers at module level."""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any, Callable

from profiler.schema import OpLensError

Say = Callable[[str, float], None]
JobFunction = Callable[[dict, Say, threading.Event], Any]


@dataclass(frozen=True)
class Kind:
    module: str  # the module whose import registers the job function
    timeout_s: float  # the worker is stopped after this long (a search adds its budget)
    timed: bool = True  # measures: waits its turn in the queue, one at a time
    typical_s: float = 60.0  # the estimate before any job of the kind has finished here
    saves: tuple[tuple[str, str], ...] = ()  # (what, name) in the order the job saves them
    loads_model: bool = True  # loads the payload's `spec`: the server's model policy applies at submit


KINDS: dict[str, Kind] = {
    "profile": Kind("profiler.jobs.worker", 900, typical_s=30, saves=(("run", "run"),)),
    "sweep": Kind("profiler.jobs.worker", 1800, typical_s=120, saves=(("sweep", "sweep"),)),
    "profile-generation": Kind("profiler.jobs.worker", 1200, typical_s=60, saves=(("run", "run"),)),
    "train": Kind("profiler.jobs.worker", 1200, typical_s=45, saves=(("run", "run"),)),
    "import": Kind("profiler.jobs.worker", 600, timed=False, typical_s=10, saves=(("run", "run"),),
                   loads_model=False),
    "peaks": Kind("profiler.jobs.worker", 300, typical_s=15, loads_model=False),
    "check": Kind("optimizers.worker", 600, timed=False, typical_s=10),
    "optimize": Kind("optimizers.worker", 1800, typical_s=90,
                     saves=(("run", "base run"), ("run", "optimized run"), ("comparison", "comparison"))),
    "search": Kind("optimizers.worker", 1200, typical_s=300,
                   saves=(("run", "base run"), ("run", "best run"), ("comparison", "comparison"))),
    "generate": Kind("optimizers.worker", 1800, typical_s=120, saves=(("comparison", "comparison"),)),
    "train-passes": Kind("optimizers.worker", 1800, typical_s=90, saves=(("comparison", "comparison"),)),
}

_FUNCTIONS: dict[str, JobFunction] = {}


def job(kind: str) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the one that runs jobs of `kind` (a key of KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"job kind '{kind}' is not in profiler.jobs.kinds.KINDS")

    def register(fn: JobFunction) -> JobFunction:
        _FUNCTIONS[kind] = fn
        return fn

    return register


def kind_of(name: str) -> Kind:
    """The Kind called `name`; OpLensError naming the known kinds otherwise."""
    if name not in KINDS:
        raise OpLensError(f"unknown job kind '{name}'; known: {', '.join(KINDS)}")
    return KINDS[name]


def function(name: str) -> JobFunction:
    """The function registered for kind `name`, importing the module that registers it on first use."""
    if name not in _FUNCTIONS:
        importlib.import_module(kind_of(name).module)
    if name not in _FUNCTIONS:
        raise OpLensError(f"{kind_of(name).module} registers no job of kind '{name}'")
    return _FUNCTIONS[name]


def outcome(kind: str, verb: str, saved: list[tuple[str, str]]) -> str:
    """`verb` ("cancelled", "failed") with what the job really kept: 'cancelled; the base run r-1 was saved, the
    optimized run and the comparison were not'."""
    left = list(kind_of(kind).saves) if kind in KINDS else []
    kept = []
    for what, ident in saved:
        role = next((r for r in left if r[0] == what), None)
        if role is not None:
            left.remove(role)
        kept.append(f"the {role[1] if role else what} {ident}")
    if not kept:  # a kind that never saves anything (check, generate) has nothing to own up to
        return f"{verb}; nothing was saved" if left else verb
    text = f"{verb}; {_join(kept)} {'was' if len(kept) == 1 else 'were'} saved"
    if left:
        text += f", {_join([f'the {name}' for _, name in left])} {'was' if len(left) == 1 else 'were'} not"
    return text


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
