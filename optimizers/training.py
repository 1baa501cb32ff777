"""Training passes with proof: each changes how a step runs (precision, compilation, the optimizer's kernels, the input
pipeline, memory layout, what is kept for backward, the batch) and is proven as inference passes are:

- speed: base and optimized steps timed side by side in ABBA order (A B B A, then B A A B ...), `rounds` rounds of
  `steps` steps each after a warm-up; the speedup is the median of the per-round ratios of time *per sample* (a
  larger batch is judged by throughput), with the lowest and highest round;
- what the model learns: both start from the same weights and see the same samples in the same order (same seed);
  their loss curves are compared at equal samples seen, and both are scored after training on a held-out batch
  neither trained on. The pass agrees when the held-out loss is within LOSS_RTOL (relative) and no point of the curve
  is further than CURVE_RTOL of the base curve's mean;
- memory: the peak of one step under the memory profiler, for each.
"""
from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from profiler.measure import train as tr
from profiler.measure.lock import measurement_lock
from profiler.models.loaded import LoadedModel
from profiler.schema import ModelRunError, Ratio, TrainConfig, TrainResult

LOSS_RTOL = 0.05  # held-out loss within 5% of the base's (plus LOSS_ATOL)
LOSS_ATOL = 0.01
CURVE_RTOL = 0.10  # every point of the loss curve within 10% of the base curve's mean


@dataclass
class Change:
    """What a pass did to the training setup: the parts and config to train with, and a note."""
    parts: tr.TrainParts
    config: TrainConfig
    note: str = ""


def _bf16(parts, config):
    return Change(parts, replace(config, dtype="bfloat16"), "forward and loss under torch.autocast(bfloat16)")


def _compile(parts, config):
    import torch._inductor.config as inductor

    # Inductor draws dropout from its own generator: with fallback_random it draws eager's masks, so the loss curves
    # compare the compiler, not two random streams (a little slower than Inductor's own random kernels)
    inductor.fallback_random = True
    return Change(replace(parts, runner=torch.compile(parts.module)), config,
                  "torch.compile of the model (forward and its backward through AOTAutograd, Inductor; random ops "
                  "as eager draws them, so dropout masks match)")


def _fused_optimizer(parts, config):
    name = "adamw-fused" if config.optimizer.startswith("adamw") else "sgd-foreach"
    return Change(parts, replace(config, optimizer=name), f"optimizer {config.optimizer} -> {name} (one kernel "
                  "over all parameters instead of a loop)")


def _workers(parts, config):
    return Change(parts, replace(config, workers=2, pin_memory=torch.cuda.is_available()),
                  "DataLoader with 2 worker processes" + (" and pin_memory" if torch.cuda.is_available() else ""))


def _checkpointing(parts, config):
    module = parts.module
    if hasattr(module, "gradient_checkpointing_enable") and getattr(module, "supports_gradient_checkpointing", 0):
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return Change(parts, config, "Hugging Face gradient checkpointing: layer activations recomputed in backward")
    blocks = max((m for m in module.modules() if isinstance(m, (nn.Sequential, nn.ModuleList))),
                 key=len, default=None)
    if blocks is None or len(blocks) < 2:
        raise ModelRunError("activation-checkpointing: no sequence of blocks (nn.Sequential / ModuleList) to wrap")
    for child in blocks:
        forward = child.forward
        child.forward = (lambda f: lambda *a, **k: torch.utils.checkpoint.checkpoint(f, *a, use_reentrant=False,
                                                                                        **k))(forward)
    return Change(parts, config, f"{len(blocks)} blocks checkpointed: their activations are recomputed in backward")


def _channels_last(parts, config):
    if not any(isinstance(m, nn.Conv2d) for m in parts.module.modules()):
        raise ModelRunError("channels-last: the model has no 2-D convolution")
    parts.module.to(memory_format=torch.channels_last)
    inner = parts.forward

    def forward(module, batch):
        def cl(x):
            return x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and \
                x.dim() == 4 and x.is_floating_point() else x
        batch = {k: cl(v) for k, v in batch.items()} if isinstance(batch, dict) else \
            type(batch)(cl(v) for v in batch) if isinstance(batch, (tuple, list)) else cl(batch)
        return inner(module, batch)
    return Change(replace(parts, forward=forward), config, "weights and 4-D inputs in channels_last (NHWC)")


def _larger_batch(parts, config):
    return Change(parts, replace(config, batch_size=2 * config.batch_size, lr=2 * config.lr),
                  f"batch {config.batch_size} -> {2 * config.batch_size}, learning rate doubled with it (the same "
                  "learning rate per sample: the linear scaling rule)")


def _accumulate(parts, config):
    if config.batch_size < 2:
        raise ModelRunError("gradient-accumulation: a batch of 1 cannot be split")
    return Change(parts, replace(config, accumulate=2), f"each batch of {config.batch_size} as 2 micro-batches of "
                  f"{config.batch_size // 2}, one optimizer step: the same update, less activation memory at once")


@dataclass
class TrainPass:
    name: str
    apply: Callable[[tr.TrainParts, TrainConfig], Change]
    description: str
    memory: bool = False  # a memory pass: it trades time for peak memory


TRAIN_PASSES = {p.name: p for p in (
    TrainPass("bf16-autocast", _bf16, "autocast forward and loss to bfloat16 (fast where the hardware has bf16)"),
    TrainPass("torch-compile", _compile, "torch.compile the model: fused forward and backward kernels"),
    TrainPass("fused-optimizer", _fused_optimizer, "the optimizer's fused / foreach kernels"),
    TrainPass("loader-workers", _workers, "DataLoader worker processes (and pin_memory on a GPU)"),
    TrainPass("activation-checkpointing", _checkpointing, "recompute activations in backward: less peak memory, "
              "more time", memory=True),
    TrainPass("channels-last", _channels_last, "NHWC memory layout for convolution nets"),
    TrainPass("larger-batch", _larger_batch, "twice the batch, the learning rate per sample kept"),
    TrainPass("gradient-accumulation", _accumulate, "two micro-batches per optimizer step: the same update with "
              "less memory at once", memory=True),
)}


TOLERANCE = (f"held-out loss within {LOSS_RTOL:.0%} (+{LOSS_ATOL:g}) and every point of the curve within "
             f"{CURVE_RTOL:.0%} of the base curve's mean")


def _setup(loaded: LoadedModel, config: TrainConfig, passes: list[str]) -> tuple[tr._Stepper, Change]:
    parts = tr.parts_for(loaded, config)
    change = Change(parts, config)
    notes = []
    for name in passes:
        change = TRAIN_PASSES[name].apply(change.parts, change.config)
        notes.append(f"{name}: {change.note}")
    change.note = "; ".join(notes)
    device = tr.devices.resolve_device(change.config.device)
    return tr._Stepper(change.parts, change.config, device), change


def _heldout(stepper: tr._Stepper, batch) -> float:
    """The loss on a batch neither model trained on, in eval mode (no dropout: the two are scored alike)."""
    parts = stepper.parts
    parts.module.eval()
    try:
        with torch.no_grad(), stepper.autocast():
            runner = parts.runner if parts.runner is not None else parts.module
            return float(parts.loss(parts.forward(runner, batch), batch))
    finally:
        parts.module.train()


def _held_out_batch(parts: tr.TrainParts, config: TrainConfig):
    """A batch neither model trains on: samples past the ones the steps draw (OpLens's sample sets), or a user
    dataset's last items."""
    from torch.utils.data import default_collate

    ds = parts.dataset
    if isinstance(ds, tr.Samples):
        return default_collate([ds[len(ds) + j] for j in range(config.batch_size)])
    return default_collate([ds[len(ds) - 1 - j] for j in range(min(config.batch_size, len(ds)))])


def _timed(stepper: tr._Stepper, steps: int, start: int) -> float:
    """Median wall time (ms) of `steps` steps."""
    import time

    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        stepper.step(start + i)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def compare(loaded: LoadedModel, passes: list[str], config: TrainConfig | None = None, rounds: int = 2,
            steps: int = 3, curve_steps: int = 8, progress: Callable[[str, float], None] | None = None
            ) -> TrainResult:
    """Apply `passes` to a copy of `loaded`'s training setup and prove the result (module docstring)."""
    unknown = [p for p in passes if p not in TRAIN_PASSES]
    if unknown or not passes:
        raise ModelRunError(f"unknown training pass(es) {', '.join(unknown) or '(none given)'}: use "
                            f"{', '.join(TRAIN_PASSES)}")
    say = progress or (lambda stage, frac: None)
    config = config or TrainConfig()
    if config.batch_size <= 0:
        config = replace(config, batch_size=loaded.batch_size or 8)
    config = replace(config, steps=max(config.steps, curve_steps + 2 * rounds * steps + 4), memory=False)
    torch.manual_seed(config.seed)
    base, base_change = _setup(copy.deepcopy(loaded), config, [])  # `loaded` itself stays untrained
    new, change = _setup(copy.deepcopy(loaded), config, passes)  # the same initial weights, the same samples
    held = tr._to(_held_out_batch(base_change.parts, config), base.device, False)
    say("loss curves from the same weights and samples", 0.05)
    ratio = change.config.batch_size // config.batch_size or 1
    torch.manual_seed(config.seed)  # the same dropout masks for both curves
    base_losses = [base.step(i) for i in range(curve_steps)]
    torch.manual_seed(config.seed)
    new_losses = [new.step(i) for i in range(max(1, curve_steps // ratio))]
    base_at = [statistics.fmean(base_losses[i * ratio:(i + 1) * ratio]) for i in range(len(new_losses))]
    scale = statistics.fmean(abs(x) for x in base_at) or 1.0
    gap = max(abs(a - b) for a, b in zip(new_losses, base_at)) / scale
    base_held, new_held = _heldout(base, held), _heldout(new, held)
    agrees = abs(new_held - base_held) <= LOSS_RTOL * abs(base_held) + LOSS_ATOL and gap <= CURVE_RTOL
    say("timing the steps side by side (ABBA)", 0.3)
    per_round, base_ms, new_ms = [], [], []
    with measurement_lock():
        _timed(base, 1, curve_steps)
        _timed(new, 1, curve_steps)
        for r in range(rounds):
            order = ("a", "b", "b", "a") if r % 2 == 0 else ("b", "a", "a", "b")
            got = {"a": [], "b": []}
            for j, who in enumerate(order):
                stepper = base if who == "a" else new
                got[who].append(_timed(stepper, steps, 100 + 10 * r + j))
            a, b = min(got["a"]), min(got["b"])
            base_ms.append(a)
            new_ms.append(b)
            per_round.append((a / config.batch_size) / (b / change.config.batch_size))
            say(f"ABBA round {r + 1} of {rounds}", 0.3 + 0.5 * (r + 1) / rounds)
        say("one step of each under the memory profiler", 0.85)
        base_peak = tr._memory_step(base, 1000).peak_bytes
        new_peak = tr._memory_step(new, 1000).peak_bytes
    xs = sorted(per_round)
    speed = Ratio(median=statistics.median(xs), p10=xs[0], p90=xs[-1], rounds=len(xs))
    memory_pass = any(TRAIN_PASSES[p].memory for p in passes)
    verdict = (f"{'+'.join(passes)}: {speed.median:.2f}x per sample ({speed.p10:.2f}-{speed.p90:.2f} over "
               f"{speed.rounds} ABBA round{'s' if speed.rounds != 1 else ''}), peak memory "
               f"{base_peak / 2**20:,.1f} -> {new_peak / 2**20:,.1f} MiB; "
               + ("loss agrees" if agrees else "LOSS DIFFERS") + f" (held-out {base_held:.4g} -> {new_held:.4g}, "
               f"curve within {gap:.1%} of the base's mean)"
               + ("; a memory pass: judge it by the peak, not the speed" if memory_pass else ""))
    return TrainResult(passes=passes, notes=[change.note], speedup=speed, base_ms=statistics.median(base_ms),
                       new_ms=statistics.median(new_ms), base_batch=config.batch_size,
                       new_batch=change.config.batch_size, base_losses=base_losses, new_losses=new_losses,
                       base_heldout=base_held, new_heldout=new_held, curve_gap=gap, agrees=agrees,
                       base_peak_bytes=base_peak, new_peak_bytes=new_peak, verdict=verdict,
                       memory_pass=memory_pass, tolerance=TOLERANCE)


def search(loaded: LoadedModel, config: TrainConfig | None = None, passes: list[str] | None = None,
           progress: Callable[[str, float], None] | None = None, **timing) -> list[TrainResult]:
    """Each speed pass alone (memory passes only when named), then the ones that were faster in every ABBA round and
    kept the loss, together: every comparison, the best agreeing one first."""
    names = passes or [n for n, p in TRAIN_PASSES.items() if not p.memory]
    say = progress or (lambda stage, frac: None)
    done: list[TrainResult] = []
    for i, name in enumerate(names):
        say(f"trying {name}", i / (len(names) + 1))
        try:
            done.append(compare(loaded, [name], config, **timing))
        except ModelRunError as exc:  # a pass that does not apply to this model: said, not fatal
            done.append(TrainResult(passes=[name], notes=[str(exc)], verdict=f"{name}: not applicable: {exc}",
                                    memory_pass=TRAIN_PASSES[name].memory, tolerance=TOLERANCE))
    winners = [c.passes[0] for c in done if c.agrees and c.speedup.p10 > 1.0]
    if len(winners) > 1:
        say(f"trying {'+'.join(winners)} together", len(names) / (len(names) + 1))
        done.append(compare(loaded, winners, config, **timing))
    return sorted(done, key=lambda c: (not c.agrees, -c.speedup.median))
