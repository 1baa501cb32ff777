"""Apply passes and prove the result: outputs compared on held-out inputs (never the calibration set), same profiling
config for base and optimized, both saved."""
from __future__ import annotations

import io
from collections import Counter
from typing import Callable

import torch

import profiler
from profiler import devices, store
from profiler.analysis import frames as analysis
from profiler.measure.session import CancelToken, map_tensors
from profiler.models.loaded import LoadedModel
from profiler.schema import OptimizeResult, ProfileConfig, ProfileRun

from .base import Tolerance, apply_pipeline
from .calibration import held_out_accuracy, input_sets, outputs_on
from .validate import MIN_COSINE, MIN_TOP1


def size_bytes(module: torch.nn.Module) -> int:
    """Serialized size of the weights (quantized modules hide packed weights from .parameters())."""
    if isinstance(module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        return buf.getbuffer().nbytes
    buf = io.BytesIO()
    state = module.state_dict()  # a compiled model's holds the compiled module's (keys prefixed _orig_mod.)
    try:
        torch.save(state, buf)
    except Exception:  # noqa: BLE001 - exotic tensor subclasses: fall back to counting tensors
        return sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    return buf.getbuffer().nbytes


def outputs(loaded: LoadedModel, device: torch.device):
    args, kwargs = map_tensors((loaded.args, loaded.kwargs), lambda t: t.to(device))
    with torch.inference_mode():
        return loaded.module(*args, **kwargs)


def graph_diff(base: ProfileRun, new: ProfileRun) -> dict[str, list[int]]:
    """Op counts that differ between the two graphs: nodes fused away, removed or added."""
    a = Counter(n.op for n in base.graph.nodes if n.kind not in ("placeholder", "output"))
    b = Counter(n.op for n in new.graph.nodes if n.kind not in ("placeholder", "output"))
    return {op: [a.get(op, 0), b.get(op, 0)] for op in sorted(set(a) | set(b)) if a.get(op, 0) != b.get(op, 0)}


@store.temporary_traces()  # runs profiled here and not saved leave no trace folder
def optimize(loaded: LoadedModel, passes: list[str], config: ProfileConfig | None = None,
             progress: Callable[[str, float], None] | None = None, cancel: CancelToken | None = None,
             runs_dir: str | None = None, base_run: ProfileRun | None = None, min_cosine: float = MIN_COSINE,
             min_top1: float = MIN_TOP1) -> OptimizeResult:
    """Apply `passes` to a copy of `loaded`, compare outputs with the original on the held-out set, profile both the
    same way."""
    config = config or ProfileConfig()
    say = progress or (lambda stage, f: None)
    device = devices.resolve_device(config.device)
    say("reference outputs", 0.0)
    # judged on the held-out set: a pass that calibrates (static int8, accuracy-int8) never saw those inputs
    sets = input_sets(loaded)
    reference = outputs_on(loaded, sets.held_out, device)
    optimized, results = apply_pipeline(loaded, passes, device, progress=lambda s: say(s, 0.05),
                                        tolerance=Tolerance(min_cosine, min_top1))
    say("comparing outputs", 0.15)
    accuracy = held_out_accuracy(reference, optimized, sets, loaded.info.task, min_cosine, min_top1, device)
    applied = [r.name for r in results if r.applied]
    optimized.info.name = f"{loaded.info.name}+{'+'.join(applied) or 'nothing'}"
    stage = lambda lo, hi: (lambda s, f: say(s, lo + (hi - lo) * f))
    if base_run is None:
        base_run = profiler.profile(loaded, config, progress=stage(0.2, 0.55), cancel=cancel)
        store.save(base_run, runs_dir)
    new_run = profiler.profile(optimized, config, progress=stage(0.55 if base_run else 0.2, 0.95), cancel=cancel)
    new_run.notes.append(f"optimized from run {base_run.id} with passes: {', '.join(applied) or 'none applied'}")
    store.save(new_run, runs_dir)
    comparison = analysis.compare(base_run, new_run)
    comparison.max_abs_err, comparison.cosine, comparison.top1_agreement = (accuracy.max_abs_err, accuracy.cosine,
                                                                             accuracy.top1_agreement)
    say("done", 1.0)
    return OptimizeResult(passes=results, base_run_id=base_run.id, optimized_run_id=new_run.id, comparison=comparison,
                          accuracy=accuracy, base_size_bytes=size_bytes(loaded.module),
                          optimized_size_bytes=size_bytes(optimized.module), graph_diff=graph_diff(base_run, new_run))


@store.temporary_traces()  # runs profiled here and not saved leave no trace folder
def waterfall(loaded: LoadedModel, applied: list[str], config: ProfileConfig, result: OptimizeResult,
              progress: Callable[[str, float], None] | None = None, cancel: CancelToken | None = None) -> list[dict]:
    """Median latency after each prefix of the pipeline: [{step, median_ms}], from the base to the full pipeline.
    The ends come from `result`; each intermediate prefix is applied and profiled with the same config."""
    say = progress or (lambda s, f: None)
    device = devices.resolve_device(config.device)
    steps = [{"step": "base", "median_ms": result.comparison.base_median_ms}]
    quick = ProfileConfig.from_dict({**config.to_dict(), "graph": False, "profile_iters": 1})
    for k in range(1, len(applied)):
        say(f"measuring after {applied[k - 1]}", k / len(applied))
        model, _ = apply_pipeline(loaded, applied[:k], device)
        steps.append(
            {"step": applied[k - 1], "median_ms": profiler.profile(model, quick, cancel=cancel).latency.median_ms}
        )
    steps.append({"step": applied[-1], "median_ms": result.comparison.new_median_ms})
    return steps
