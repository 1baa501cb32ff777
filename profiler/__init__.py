"""OpLens profiler: load any PyTorch model, measure where its time goes, save the run.

The face for scripting (the README's "From Python" section):

    loaded = profiler.load_model("bert-tiny", batch_size=2, seq_len=32)
    run = profiler.profile(loaded, profiler.ProfileConfig(repeats=5))
    profiler.store.save(run)
    recs = profiler.recommend(run, profiler.peaks_for(run))

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
    Peaks,
    ProfileCancelled,
    ProfileConfig,
    ProfileRun,
    Recommendation,
    RunStoreError,
    Sweep,
    TraceFormatError,
    TrainConfig,
    TransferStat,
)

# public name -> "module" (the module itself) or "module:attribute"
_LAZY = {
    "load_model": "profiler.models.loading:load_model",
    "LoadedModel": "profiler.models.loading:LoadedModel",
    "profile": "profiler.measure.session:profile",
    "generate": "profiler.measure.generate:generate",
    "train": "profiler.measure.train:train",
    "record_training": "profiler.measure.recorder:record_training",
    "import_trace": "profiler.traces.importer:import_trace",
    "peaks": "profiler.measure.peaks:get",
    "peaks_for": "profiler.measure.peaks:for_run",
    "sweep": "profiler.measure.sweep:sweep",
    "roofline": "profiler.analysis.roofline:roofline",
    "recommend": "profiler.analysis.recommend:recommend",
    "findings": "profiler.analysis.findings:find",
    "compare": "profiler.analysis.frames:compare",
    "ops_frame": "profiler.analysis.frames:ops_frame",
    "store": "profiler.store",
    "devices": "profiler.devices",
}

__all__ = sorted(_LAZY) + [
    "Comparison", "DeviceInfo", "GenerateConfig", "Generation", "Graph", "GraphNode", "LatencyStats", "ModelInfo",
    "ModelLoadError", "ModelRunError", "OpLensError", "OpStat", "Peaks", "ProfileCancelled", "ProfileConfig",
    "ProfileRun", "Recommendation", "RunStoreError", "Sweep", "TraceFormatError", "TrainConfig", "TransferStat",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'profiler' has no attribute '{name}'")
    module_name, _, attr = _LAZY[name].partition(":")
    module = import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
