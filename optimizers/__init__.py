"""OpLens optimizers: selectable passes, applied in a pipeline, each result proven (speed and outputs)."""
# registering order is listing order: the families, in its order
from . import compile, fuse, precision, quantize, accuracy_int8, prune, lowrank, layout, runtime  # noqa: F401,I001  # isort: skip
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
from .validate import compare_outputs

__all__ = ["REGISTRY", "Pass", "PassConflictError", "PassNotApplicable", "Tolerance", "UnknownPassError",
           "apply_pipeline", "conflicts", "get", "optimize", "compare_outputs"]
