"""OpLens profiler: load any PyTorch model, measure where its time goes, save the run.

Attributes are imported on first use (PEP 562), so `import profiler.schema` or `profiler.store` does not import torch:
the dashboard's first page stays fast.
"""
from importlib import import_module

from profiler.schema import (
    Comparison,
    DeviceInfo,
    GenerateConfig,
    Generation,
    Graph,
    GraphNode,
    LatencyStats,
    ModelInfo,
    ModelLoadError,
    ModelRunError,
    OpLensError,
    OpStat,
    ProfileCancelled,
    ProfileConfig,
    ProfileRun,
    RunStoreError,
    TraceFormatError,
    TransferStat,
)

_LAZY = {"load_model": "loading", "LoadedModel": "loading", "profile": "runner", "generate": "generation",
         "store": None, "analysis": None, "traces": None, "devices": None, "tables": None, "peaks": None, "sweep": None}

__all__ = [
    "load_model",
    "profile",
    "generate",
    "GenerateConfig",
    "Generation",
    "store",
    "analysis",
    "traces",
    "LoadedModel",
    "ProfileConfig",
    "ProfileRun",
    "OpStat",
    "TransferStat",
    "GraphNode",
    "Graph",
    "LatencyStats",
    "DeviceInfo",
    "ModelInfo",
    "Comparison",
    "OpLensError",
    "ModelLoadError",
    "ModelRunError",
    "ProfileCancelled",
    "RunStoreError",
    "TraceFormatError",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'profiler' has no attribute '{name}'")
    module = import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value
