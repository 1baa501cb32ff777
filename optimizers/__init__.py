"""OpLens optimizers: selectable passes, applied in a pipeline, each result proven (speed and outputs).

The face for scripting: `optimizers.apply(loaded, ["bf16"], config)` applies passes with proof (an OptimizeResult:
speedup with its range, accuracy on held-out inputs), `optimizers.search(loaded, config, budget_s=...)` looks for the
best pipeline, `optimizers.REGISTRY` / `optimizers.passes()` list the passes, `optimizers.why_slow(run)` is the Why
slow engine's answer for a run with this registry's passes.
"""
# registering order is listing order: the families, in its order
from . import compile, fuse, precision, quantize, accuracy_int8, prune, lowrank, layout, runtime, onnx_runtimes  # noqa: F401,I001,E501  # isort: skip
from .base import (
                   REGISTRY,
                   Pass,
                   PassConflictError,
                   PassNotApplicable,
                   Tolerance,
                   UnknownPassError,
                   apply_pipeline,
                   conflicts,
                   get,
)
from .optimize import optimize
from .recommend import why_slow
from .search import search
from .validate import compare_outputs

apply = optimize  # the documented name: apply passes to a model, with proof


def passes() -> list[str]:
    """The registered passes' names, in listing order."""
    return list(REGISTRY)


__all__ = ["REGISTRY", "Pass", "PassConflictError", "PassNotApplicable", "Tolerance", "UnknownPassError",
           "apply", "apply_pipeline", "conflicts", "get", "optimize", "passes", "search", "why_slow",
           "compare_outputs"]
