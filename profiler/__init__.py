"""OpLens profiler: load any PyTorch model, measure where its time goes, save the run."""
from . import store
from .loading import LoadedModel, load_model
from .runner import profile
from .schema import (DeviceInfo, Graph, GraphNode, LatencyStats, ModelInfo, ModelLoadError, ModelRunError, OpLensError,
                     OpStat, ProfileCancelled, ProfileConfig, ProfileRun, RunStoreError, TraceFormatError, TransferStat)

__all__ = ["load_model", "profile", "store", "LoadedModel", "ProfileConfig", "ProfileRun", "OpStat", "TransferStat",
           "GraphNode", "Graph", "LatencyStats", "DeviceInfo", "ModelInfo", "OpLensError", "ModelLoadError",
           "ModelRunError", "ProfileCancelled", "RunStoreError", "TraceFormatError"]
