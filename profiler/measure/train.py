"""Profile training steps: a sample model with its natural loss, or a user factory's (module, batch or dataset, loss),
run for warm-up + N steps with OpLens's phase markers (oplens.data / forward / backward / optimizer), each timed step
a profiler step; one more step under the memory profiler gives the memory timeline by category. Under the machine-wide
lock, with progress and cancellation, as profile() is. The figures come from the run's own trace
(profiler.traces.figures for operators, profiler.traces.training for the step breakdown).

Natural losses: a causal LM predicts its own input ids (labels = input_ids); a classifier's [batch, classes] output
is scored against seeded random labels (cross-entropy); anything else (an MLP's features, a sentence embedder's
embeddings) is regressed onto a seeded random target (mean squared error).
"""
from __future__ import annotations

import copy
import datetime as _dt
import itertools
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from torch.utils.data import DataLoader, Dataset

from profiler import devices, store
from profiler.traces import training as analysis
from profiler.measure.lock import measurement_lock
from profiler.measure.ops import totals as op_totals
from profiler.measure.session import CancelToken, Progress, new_run_id
from profiler.models.loaded import LoadedModel
from profiler.schema import (
    Graph,
    ModelRunError,
    ProfileCancelled,
    ProfileConfig,
    ProfileRun,
    TrainConfig,
    Training,
)
from profiler.stats import summarize
from profiler.traces import read as traces_mod
from profiler.traces.columns import LIVE_TAG, load
from profiler.traces.figures import trace_figures

OPTIMIZERS: dict[str, tuple[type, dict]] = {
    "sgd": (torch.optim.SGD, {"momentum": 0.9, "foreach": False}),
    "sgd-foreach": (torch.optim.SGD, {"momentum": 0.9, "foreach": True}),
    "adamw": (torch.optim.AdamW, {"foreach": False}),
    "adamw-foreach": (torch.optim.AdamW, {"foreach": True}),
    "adamw-fused": (torch.optim.AdamW, {"fused": True}),
}
MEMORY_COLUMNS = ("parameters", "optimizer state", "inputs", "temporaries", "activations", "gradients",
                  "autograd detail", "unknown")  # torch.profiler._memory_profiler's order (_CATEGORY_TO_INDEX)


@dataclass
class TrainParts:
    """What a training step needs: the module, a dataset of samples (dicts of tensors), how a batch feeds the module
    and how its output is scored."""

    module: nn.Module
    dataset: Dataset
    forward: Callable[[nn.Module, object], object]  # (the module to call, a batch) -> output
    loss: Callable[[object, object], torch.Tensor]
    loss_name: str
    runner: nn.Module | None = None  # what forward calls instead of `module` (a compiled wrapper); None: module


class Samples(Dataset):
    """`n` samples cycled from an example batch (each sample a dict of per-row tensors), float inputs perturbed by
    seeded noise and integer inputs rolled so batches differ; `target` rows go with them. Made up front, so taking a
    sample is an index (the step's data wait is the loader's, not OpLens's sample making); indices past `n` (a
    held-out batch) are made on demand."""

    def __init__(self, tensors: dict[str, torch.Tensor], n: int, seed: int):
        self.tensors, self.n, self.seed = tensors, n, seed
        self.rows = next(iter(tensors.values())).shape[0]
        made = [self._make(i) for i in range(n)]
        self.made = {k: torch.stack([m[k] for m in made]) for k in tensors} if made else {}

    def _make(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        out = {}
        for k, t in self.tensors.items():
            row = t[i % self.rows]
            if row.is_floating_point() and not k.startswith("target"):
                row = row + 0.01 * torch.randn(row.shape, generator=g, dtype=row.dtype)
            elif not row.is_floating_point() and k.startswith("arg") and row.dim() >= 1 and i >= self.rows:
                row = torch.roll(row, shifts=i // self.rows, dims=-1)
            out[k] = row
        return out

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if i < self.n:
            return {k: v[i] for k, v in self.made.items()}
        return self._make(i)


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("loss", "logits", "last_hidden_state"):
        value = getattr(out, key, None) if not isinstance(out, dict) else out.get(key)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ModelRunError(f"the model returned {type(out).__name__}, with no tensor OpLens can score: give a loss "
                        "from the factory (return module, batch, loss)")


def natural_parts(loaded: LoadedModel, n: int, seed: int) -> TrainParts:
    """The TrainParts of a model loaded for inference, with its natural loss (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    tensors = {f"arg{i}": a for i, a in enumerate(loaded.args) if isinstance(a, torch.Tensor)}
    tensors |= {k: v for k, v in loaded.kwargs.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelRunError(f"{loaded.info.name}: no tensor inputs to train on")
    names = [f"arg{i}" for i in range(len(loaded.args))]
    causal = loaded.info.task == "text-generation" and "input_ids" in tensors

    def forward(module: nn.Module, batch: dict):
        args = [batch[k] for k in names]
        kwargs = {k: v for k, v in batch.items() if k not in names and not k.startswith("target")}
        return module(*args, **kwargs)

    with torch.no_grad():
        probe = _first_tensor(loaded())
    rows = probe.shape[0]
    if causal:
        tensors["labels"] = tensors["input_ids"]
        return TrainParts(loaded.module, Samples(tensors, n, seed), forward, lambda out, b: _first_tensor(out),
                          "language-model loss (labels = input ids)")
    # a sentence embedder's rows are embeddings, not logits: regressed like a student onto a teacher's (MSE)
    embedder = loaded.info.task in ("sentence-embedding", "feature-extraction")
    if probe.dim() == 2 and probe.is_floating_point() and "mlp" not in loaded.info.name and not embedder:
        tensors["target"] = torch.randint(0, probe.shape[1], (rows,), generator=g)
        return TrainParts(loaded.module, Samples(tensors, n, seed), forward,
                          lambda out, b: nn.functional.cross_entropy(_first_tensor(out).float(), b["target"]),
                          f"cross-entropy over {probe.shape[1]} classes (seeded random labels)")
    tensors["target"] = torch.randn(probe.shape, generator=g)
    return TrainParts(loaded.module, Samples(tensors, n, seed), forward,
                      lambda out, b: nn.functional.mse_loss(_first_tensor(out).float(), b["target"]),
                      "mean squared error to seeded random target embeddings (as distilling a teacher)" if embedder
                      else "mean squared error to a seeded random target")


def factory_parts(loaded: LoadedModel, n: int, seed: int) -> TrainParts:
    """A user factory's (module, batch or dataset, loss): `loss(output, target)`; a dataset's items are (inputs,
    target) pairs or dicts with a "target" key."""
    loss = loaded.loss
    if not callable(loss):
        raise ModelRunError(f"{loaded.info.spec}: the factory returned no loss to train with; return (module, batch, "
                            "loss) with batch = (inputs, target) and loss(output, target), e.g. nn.CrossEntropyLoss()")
    if loaded.dataset is not None:
        dataset = loaded.dataset

        def forward(module: nn.Module, batch):
            inputs = batch[0] if isinstance(batch, (tuple, list)) else {k: v for k, v in batch.items()
                                                                         if k != "target"}
            return module(**inputs) if isinstance(inputs, dict) else module(inputs)

        def score(out, batch):
            return loss(out, batch[1] if isinstance(batch, (tuple, list)) else batch["target"])
        return TrainParts(loaded.module, dataset, forward, score, f"{type(loss).__name__} (the factory's)")
    tensors = {f"arg{i}": a for i, a in enumerate(loaded.args)} | dict(loaded.kwargs)
    tensors["target"] = loaded.target
    names = [f"arg{i}" for i in range(len(loaded.args))]

    def forward_batch(module: nn.Module, batch: dict):
        return module(*[batch[k] for k in names],
                      **{k: v for k, v in batch.items() if k not in names and k != "target"})
    return TrainParts(loaded.module, Samples(tensors, n, seed), forward_batch,
                      lambda out, b: loss(out, b["target"]), f"{getattr(loss, '__name__', type(loss).__name__)} "
                                                             "(the factory's)")


def make_optimizer(name: str, params: list, lr: float) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ModelRunError(f"unknown optimizer '{name}': use one of {', '.join(OPTIMIZERS)}")
    cls, kwargs = OPTIMIZERS[name]
    return cls(params, lr=lr, **kwargs)


def _to(batch, device: torch.device, non_blocking: bool):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: _to(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(v, device, non_blocking) for v in batch)
    return batch


def _batches(parts: TrainParts, config: TrainConfig):
    g = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(parts.dataset, batch_size=config.batch_size, shuffle=False, num_workers=config.workers,
                        pin_memory=config.pin_memory, drop_last=True, generator=g,
                        persistent_workers=config.workers > 0)
    if len(loader) == 0:
        raise ModelRunError(f"the dataset has {len(parts.dataset)} samples, fewer than one batch of "
                            f"{config.batch_size}")
    return itertools.chain.from_iterable(itertools.repeat(loader))


def _split(batch, k: int) -> list:
    """`batch` as k micro-batches along dim 0 (tensors inside dicts, tuples and lists); [batch] when k is 1."""
    if k <= 1:
        return [batch]

    def part(x, j):
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            return x.chunk(k)[j]
        if isinstance(x, dict):
            return {key: part(v, j) for key, v in x.items()}
        if isinstance(x, (tuple, list)):
            return type(x)(part(v, j) for v in x)
        return x
    return [part(batch, j) for j in range(k)]


def _next(it):
    try:
        return next(it)
    except Exception as exc:  # noqa: BLE001 - a worker can fail with anything
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRunError(f"the DataLoader failed: {first}") from None


class _Stepper:
    """One training step with OpLens's phase markers; the loss of the first step is checked."""

    def __init__(self, parts: TrainParts, config: TrainConfig, device: torch.device):
        self.parts, self.config, self.device = parts, config, device
        parts.module.to(device).train()
        params = [p for p in parts.module.parameters() if p.requires_grad]
        if not params:
            raise ModelRunError("the model has no trainable parameters (every parameter has requires_grad=False)")
        self.opt = make_optimizer(config.optimizer, params, config.lr)
        self.batches = _batches(parts, config)
        dtype = devices.DTYPES.get(config.dtype, torch.float32)
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype != torch.float32 else nullcontext
        self.non_blocking = config.pin_memory and device.type == "cuda"

    def step(self, i: int) -> float:
        with record_function(LIVE_TAG + "data"):
            batch = _to(_next(self.batches), self.device, self.non_blocking)
        value = 0.0
        parts = _split(batch, self.config.accumulate)  # gradient accumulation: micro-batches, one optimizer step
        for micro in parts:
            with record_function(LIVE_TAG + "forward"), self.autocast():
                runner = self.parts.runner if self.parts.runner is not None else self.parts.module
                loss = self.parts.loss(self.parts.forward(runner, micro), micro)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise ModelRunError(f"the loss returned {type(loss).__name__}"
                                    f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}, not a scalar "
                                    "tensor")
            if i == 0 and not torch.isfinite(loss.detach()):
                raise ModelRunError(f"the loss is {float(loss.detach())} at step 1: check the inputs and targets "
                                    "(nothing was trained or saved)")
            value += float(loss.detach()) / len(parts)
            with record_function(LIVE_TAG + "backward"):
                (loss / len(parts)).backward()
        with record_function(LIVE_TAG + "optimizer"):
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the step's kernels inside its window
        return value


def _memory_step(stepper: _Stepper, index: int) -> object:
    """One more step under the memory profiler: memory in use by category over it, its peak and the phase then."""
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    device = stepper.device
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts, profile_memory=True, record_shapes=True, with_stack=True) as prof:
        stepper.step(index)
    times, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(str(device))
    start_us = prof.profiler.kineto_results.trace_start_ns() / 1e3
    tags: dict[str, list] = {}
    for e in prof.events():
        if e.name.startswith(LIVE_TAG):
            tags.setdefault(e.name[len(LIVE_TAG):], []).append((start_us + e.time_range.start,
                                                                start_us + e.time_range.end))
    columns = {name: [row[i + 1] for row in sizes] for i, name in enumerate(MEMORY_COLUMNS)}
    columns = {k: v for k, v in columns.items() if any(v)}
    lo, hi = (min(times), max(times)) if times else (0.0, 0.0)
    return analysis.memory_timeline(str(device), times, columns, lo, hi, tags)


def parts_for(loaded: LoadedModel, config: TrainConfig) -> TrainParts:
    n = config.batch_size * (config.warmup + config.steps + 1)
    if loaded.loss is not None or loaded.dataset is not None or loaded.target is not None:  # a training factory
        return factory_parts(loaded, n, config.seed)
    return natural_parts(loaded, n, config.seed)


def train(loaded: LoadedModel, config: TrainConfig | None = None, progress: Progress | None = None,
          cancel: CancelToken | None = None, snapshot_path: str | None = None) -> ProfileRun:
    """Profile `config.steps` training steps of `loaded` after `config.warmup`; the run, not yet saved. With
    `snapshot_path` (CUDA), one more step's CUDA memory snapshot is written there for PyTorch's memory viewer."""
    config = config or TrainConfig()
    if config.batch_size <= 0:  # the model's own batch size (a factory's defaults stand, as for profile)
        config = replace(config, batch_size=loaded.batch_size or 8)
    say = progress or (lambda stage, frac: None)
    device = devices.resolve_device(config.device)
    if snapshot_path and device.type != "cuda":
        raise ModelRunError("--memory-snapshot records the CUDA caching allocator: it needs a CUDA GPU (on a CPU the "
                            "memory timeline by category is taken instead)")
    torch.manual_seed(config.seed)
    parts = parts_for(loaded, config)
    stepper = _Stepper(parts, config, device)
    path = os.path.join(store.temp_trace_dir(), traces_mod.trace_file_name("train"))
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    total, losses, memory = config.warmup + config.steps, [], None
    say("waiting for the measurement lock", 0.0)
    with measurement_lock():
        with profile(activities=acts, schedule=schedule(wait=0, warmup=config.warmup, active=config.steps),
                     on_trace_ready=lambda p: p.export_chrome_trace(path)) as prof:
            for i in range(total):
                if cancel is not None and cancel.is_set():
                    raise ProfileCancelled("training cancelled")
                losses.append(stepper.step(i))
                prof.step()
                say(f"training step {i + 1} of {total}", 0.85 * (i + 1) / total)
        if config.memory:
            say("one step under the memory profiler", 0.9)
            memory = _memory_step(stepper, total)
        if snapshot_path:
            from profiler.measure.snapshot import take_snapshot

            got = take_snapshot(lambda: stepper.step(total + 1), snapshot_path, device)
    run = _assemble(loaded, config, device, parts, path, losses, memory)
    if snapshot_path:
        run.notes.append(f"CUDA memory snapshot of one step in {snapshot_path} ({got['allocated_bytes'] / 2**20:,.1f} "
                         f"MiB allocated, {got['reserved_bytes'] / 2**20:,.1f} MiB reserved): open it at "
                         "https://pytorch.org/memory_viz")
    return run


def _assemble(loaded: LoadedModel, config: TrainConfig, device: torch.device, parts: TrainParts, path: str,
              losses: list[float], memory) -> ProfileRun:
    figs = trace_figures(path).per_step(config.steps)
    steps = analysis.steps(load(path), losses[config.warmup:])
    walls = [s.wall_ms for s in steps]
    latency = summarize(walls)
    phases, categories = analysis.medians(steps, "phases"), analysis.medians(steps, "categories")
    share, bound, verdict = analysis.input_verdict(phases, latency.median_ms, config.workers,
                                                   config.pin_memory if device.type == "cuda" else None)
    training = Training(config=config, steps=steps, wall=analysis.spread(walls), phases=phases,
                        categories=categories, data_share=share, input_bound=bound, verdict=verdict, memory=memory,
                        losses=losses, source="live")
    name = loaded.info.name
    notes = [f"training: {config.steps} steps after {config.warmup} warm-up, optimizer {config.optimizer} "
             f"(lr {config.lr:g}), batch {config.batch_size}, loss: {parts.loss_name}",
             "step times are measured with the profiler on (no shapes, no memory recording: a light profiler); "
             "operator figures are per step"]
    return ProfileRun(
        id=new_run_id(f"{name}-train"), created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        model=copy.copy(loaded.info), device=devices.device_info(device),
        config=ProfileConfig(device=device.type, batch_size=config.batch_size, seq_len=loaded.seq_len,
                             warmup=config.warmup, repeats=config.steps, min_time_s=0.0, profile_iters=config.steps,
                             graph=False, dtype=config.dtype),
        latency=latency, totals=op_totals(figs.ops, latency.median_ms, device.type == "cuda"), ops=figs.ops,
        transfers=figs.transfers, graph=Graph(method="none", note="a training run captures no graph"),
        trace_path=path, label=f"train: {name}", notes=notes, versions=devices.library_versions(),
        kernels=figs.kernels, gpu=figs.gpu, training=training)
