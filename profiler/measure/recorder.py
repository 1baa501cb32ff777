"""Profile a training loop OpLens does not run: two lines in any script.

    import profiler
    with profiler.record_training(name="my-model") as rec:
        for batch in loader:
            ...                      # forward, backward, optimizer step, as the script already does
            rec.step(loss)           # after each step (the loss is optional)

The first `warmup` steps are not recorded, the next `steps` are (profiler steps of a light profiler: no shapes, no
memory); later steps run unprofiled. On leaving the block the run is built from its trace as a `profiler train` run
is (phases from torch's own marks: the DataLoader's next batch, Optimizer.step, the autograd engine) and saved in the
runs folder; `rec.run` is the saved run.
"""
from __future__ import annotations

import copy
import datetime as _dt
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from profiler import devices, store
from profiler.traces import training as analysis
from profiler.measure.ops import totals as op_totals
from profiler.measure.session import new_run_id
from profiler.schema import Graph, ModelInfo, ProfileConfig, ProfileRun, TrainConfig, Training
from profiler.stats import summarize
from profiler.traces import read as traces_mod
from profiler.traces.columns import load
from profiler.traces.figures import trace_figures


class Recorder:
    """What `record_training` yields: call `step()` after every training step."""

    def __init__(self, prof, warmup: int, steps: int):
        self._prof, self.warmup, self.steps = prof, warmup, steps
        self.losses: list[float] = []
        self.count = 0
        self.run: ProfileRun | None = None

    def step(self, loss=None) -> None:
        if loss is not None:
            self.losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))
        self.count += 1
        if self.count <= self.warmup + self.steps:
            self._prof.step()


@contextmanager
def _recording(warmup: int, steps: int) -> Iterator[tuple[Recorder, str]]:
    """torch.profiler over `warmup` + `steps` steps (a profiler step each), its trace written to a temporary file:
    the Recorder that steps it, and that file's path."""
    path = os.path.join(store.temp_trace_dir(), traces_mod.trace_file_name("train"))
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        with profile(activities=acts, schedule=schedule(wait=0, warmup=warmup, active=steps),
                     on_trace_ready=lambda p: p.export_chrome_trace(path)) as prof:
            yield Recorder(prof, warmup, steps), path


@contextmanager
def record_training(name: str = "my-training", steps: int = 5, warmup: int = 1, batch_size: int = 0,
                    runs_dir: str | os.PathLike | None = None) -> Iterator[Recorder]:
    """Record `steps` training steps after `warmup` of the loop inside the block and save them as a run named
    `name` (see the module docstring)."""
    with _recording(warmup, steps) as (rec, path):
        yield rec
    if rec.count < warmup + steps:
        raise RuntimeError(f"record_training({name!r}) saw {rec.count} steps; it records {steps} after {warmup} "
                           "warm-up: call rec.step() after each step, or lower steps=")
    config = TrainConfig(batch_size=batch_size, steps=steps, warmup=warmup, optimizer="(the script's)",
                         device="cuda" if torch.cuda.is_available() else "cpu", memory=False)
    rec.run = _run(name, config, path, rec.losses)
    store.save(rec.run, runs_dir)


def _run(name: str, config: TrainConfig, path: str, losses: list[float]) -> ProfileRun:
    figs = trace_figures(path).per_step(config.steps)
    steps = analysis.steps(load(path), losses[config.warmup:])
    walls = [s.wall_ms for s in steps]
    latency = summarize(walls)
    phases = analysis.medians(steps, "phases")
    share, bound, verdict = analysis.input_verdict(phases, latency.median_ms)
    device = torch.device(config.device)
    training = Training(config=config, steps=steps, wall=analysis.spread(walls), phases=phases,
                        categories=analysis.medians(steps, "categories"), data_share=share, input_bound=bound,
                        verdict=verdict, losses=losses, source="recorder")
    return ProfileRun(
        id=new_run_id(name), created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        model=ModelInfo(name=name, source="recorder", parameters=0, task="training (your script)"),
        device=devices.device_info(device),
        config=ProfileConfig(device=device.type, batch_size=config.batch_size, seq_len=0, warmup=config.warmup,
                             repeats=config.steps, min_time_s=0.0, profile_iters=config.steps, graph=False),
        latency=latency, totals=op_totals(figs.ops, latency.median_ms, device.type == "cuda"), ops=figs.ops,
        transfers=figs.transfers, graph=Graph(method="none", note="a recorded training loop captures no graph"),
        trace_path=path, label=f"train: {name}", versions=devices.library_versions(), kernels=figs.kernels,
        gpu=figs.gpu, training=copy.deepcopy(training),
        notes=[f"recorded from a script: {config.steps} steps after {config.warmup} warm-up; phases from torch's "
               "own marks (DataLoader, Optimizer.step, the autograd engine); forward is the rest of the operators"])


def train_step_function(spec: str, steps: int = 5, warmup: int = 1, name: str = "",
                        progress=None) -> ProfileRun:
    """Profile a user's own step function, `file.py:function`: called with no arguments once per step (it runs
    forward, backward and the optimizer itself and may return the loss), `warmup` untimed calls then `steps` profiler
    steps, analysed as a recorded loop is (phases from torch's own marks). The run, not yet saved."""
    from profiler.models.loading import import_user_file
    from profiler.schema import ModelLoadError, ModelRunError

    path, _, fn_name = spec.partition(".py:")
    path = path + ".py"
    if not fn_name or not os.path.isfile(path):
        raise ModelLoadError(f"a step function is named file.py:function; {spec!r} is not one (or the file is "
                             "missing)")
    fn = getattr(import_user_file(path), fn_name, None)
    if not callable(fn):
        raise ModelLoadError(f"{path} has no function '{fn_name}'")
    say = progress or (lambda stage, frac: None)
    with _recording(warmup, steps) as (rec, trace):
        for i in range(warmup + steps):
            try:
                out = fn()
            except Exception as exc:  # noqa: BLE001 - the user's step can raise anything
                raise ModelRunError(f"{spec} raised {type(exc).__name__} at step {i + 1}: {exc}") from None
            rec.step(out)
            say(f"step {i + 1} of {warmup + steps}", (i + 1) / (warmup + steps))
    config = TrainConfig(steps=steps, warmup=warmup, optimizer="(the function's)",
                         device="cuda" if torch.cuda.is_available() else "cpu", memory=False)
    run = _run(name or f"{Path(path).stem}:{fn_name}", config, trace, rec.losses)
    run.model.source, run.model.spec = "step-function", spec
    return run
