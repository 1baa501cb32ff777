"""The workshop lessons' check-your-understanding questions, each answered from the participant's own numbers: a run,
a saved comparison or a batch series. Pure functions over the schema's dataclasses; the Learn pages only ask them."""
from __future__ import annotations

from dataclasses import dataclass, field

from profiler.analysis.basis import breakdown
from profiler.analysis.frames import ops_frame_scaled
from profiler.devices import NATIVE_FLAGS, VNNI_FLAGS
from profiler.schema import ProfileRun, SavedComparison, SweepPoint

LESSON_MODEL = "bert-tiny"  # what the lessons profile, small enough for twenty people on one CPU
PRECISION_FAMILIES = ("precision", "quantization")  # optimizers' pass families lesson 3 compares
FUSION_FAMILIES = ("compilation & fusion",)  # and lesson 4
AS_IS = "fp32, as it is"
# the lesson-2 buckets: share of the explained time (T_exec + T_trans) that is data movement
MOVEMENT_BUCKETS = ((0.01, "under 1%"), (0.10, "1% to 10%"), (0.50, "10% to 50%"), (float("inf"), "over 50%"))
OPTIONS = 4  # answers offered to a multiple-choice question


@dataclass
class Question:
    """A multiple-choice question whose correct option was computed from measured numbers."""
    prompt: str
    options: list[str]
    answer: int  # index of the correct option
    explanation: str  # why, with the numbers
    notes: list[str] = field(default_factory=list)

    @property
    def correct(self) -> str:
        return self.options[self.answer]


def _ask(prompt: str, options: list[str], correct: str, explanation: str, notes: list[str] | None = None) -> Question:
    # options in a fixed, alphabetical order: where the right answer sits says nothing about it
    options = sorted(dict.fromkeys(options))
    return Question(prompt, options, options.index(correct), explanation, list(notes or []))


def top_op_share(run: ProfileRun) -> tuple[str, float]:
    """The operator with the most own time per inference and its share of T_exec + T_trans (as the Operators page
    shows it)."""
    frame = ops_frame_scaled(run)
    if frame.empty:
        raise ValueError(f"run {run.id} recorded no operators")
    top = frame.sort_values("time_ms", ascending=False).iloc[0]
    return str(top["name"]), float(top["share"])


def where_time_goes(run: ProfileRun) -> Question:
    """Lesson 1: which operator takes the largest share of the time."""
    frame = ops_frame_scaled(run).sort_values("time_ms", ascending=False)
    if frame.empty:
        raise ValueError(f"run {run.id} recorded no operators")
    name, share = top_op_share(run)
    top = frame.head(OPTIONS)
    runner_up = (f" The next is {top.iloc[1]['name']} at {top.iloc[1]['share']:.0%}." if len(top) > 1 else "")
    return _ask("Which operator takes the largest share of the operator time in your run?", list(top["name"]), name,
                f"{name} takes {share:.0%} of T_exec + T_trans ({frame.iloc[0]['time_ms']:.3g} of "
                f"{frame['time_ms'].sum():.3g} ms of the {run.latency.median_ms:.3g} ms median).{runner_up}")


def movement_share(run: ProfileRun) -> float:
    """T_trans as a share of the time the operators explain (T_exec + T_trans)."""
    explained = run.totals.exec_ms + run.totals.trans_ms
    return run.totals.trans_ms / explained if explained else 0.0


def compute_vs_movement(run: ProfileRun) -> Question:
    """Lesson 2: how much of the explained time is data movement rather than compute."""
    share = movement_share(run)
    bucket = next(label for limit, label in MOVEMENT_BUCKETS if share < limit)
    what = run.totals.trans_label or "data movement"
    parts = breakdown(run)  # as the lesson's bar shows them: parts of the median
    return _ask("What share of the time the operators explain (T_exec + T_trans) is data movement (T_trans)?",
                [label for _, label in MOVEMENT_BUCKETS], bucket,
                f"T_trans is {parts['T_trans']:.3g} ms and T_exec {parts['T_exec']:.3g} ms per inference, so data "
                f"movement is "
                f"{share:.1%} ({what}) on {run.device.kind}: {run.device.name}.")


def _precision(c: SavedComparison) -> str:
    return "+".join(c.passes)


def results_with(comparisons: list[SavedComparison], model: str, passes: set[str]) -> list[SavedComparison]:
    """The applies on `model` that applied only passes among `passes`, in the order given (the store: newest first)."""
    return [c for c in comparisons if not c.error and c.kind == "apply" and c.model == model and c.passes
            and set(c.passes) <= passes]


PRECISION_TRIES = {"bf16": ["bf16"], "dynamic int8": ["dynamic-int8"], "weight-only int8": ["weight-only-int8"]}
EMULATED_TRY = " (emulated here)"  # appended to a Try button whose precision this CPU has no instructions for


def precision_tries(emulated: list[str]) -> list[tuple[str, list[str]]]:
    """Lesson 3's Try buttons, (label, passes), precisions this CPU runs natively first: twenty participants pressing
    an emulated bf16 first would queue for minutes behind a 10x slower model (Zen 3: one bert-tiny bf16 apply 10.7 s,
    0.51x). An emulated one stays, last and labelled, since seeing it lose is part of the lesson."""
    tries = [(title + (EMULATED_TRY if passes[0] in emulated else ""), passes)
             for title, passes in PRECISION_TRIES.items()]
    return sorted(tries, key=lambda t: t[0].endswith(EMULATED_TRY))


def precision_winner(comparisons: list[SavedComparison], model: str, precision_passes: set[str],
                     cpu_features: list[str] | None = None) -> Question:
    """Lesson 3: which precision ran fastest while its outputs stayed within the tolerance; fp32 when none beat it.
    The newest result per pipeline counts."""
    newest: dict[str, SavedComparison] = {}
    for c in results_with(comparisons, model, precision_passes):
        newest.setdefault(_precision(c), c)
    if not newest:
        raise ValueError(f"no precision pass applied to {model} yet: try bf16 or dynamic-int8 first")
    speed = {AS_IS: 1.0}
    lines = []
    for name, c in newest.items():
        ok = c.accuracy is not None and c.accuracy.passed
        if ok:
            speed[name] = c.speedup
        cosine = f"cosine {c.accuracy.cosine:.5f}" if c.accuracy else "not compared"
        lines.append(f"{name}: {c.speedup:.2f}x ({c.speedup_low:.2f}-{c.speedup_high:.2f}), {cosine}, "
                     f"accuracy {'passed' if ok else 'FAILED, so it cannot win'}")
    winner = max(speed, key=speed.get)
    features = set(cpu_features or [])
    bf16, int8 = sorted(features & NATIVE_FLAGS["bf16"]), sorted(features & VNNI_FLAGS)
    hardware = (f"this CPU has native bf16 maths ({', '.join(bf16)})" if bf16 else
                "this CPU has no native bf16 maths, so bf16 is converted to fp32 and back around each operation")
    hardware += (f" and int8 dot products ({', '.join(int8)})" if int8 else
                 " and no int8 dot-product instructions (VNNI)")
    return _ask("On this machine, which precision gave the lowest latency while keeping accuracy?",
                [AS_IS, *newest], winner,
                f"{winner} wins here. " + "; ".join(lines) + f". Why it depends on the CPU: {hardware}.",
                notes=lines)


def biggest_saving(comparison: SavedComparison) -> Question:
    """Lesson 4: after a compiling or fusing pass, which operator's time fell the most (or vanished)."""
    if comparison.apply is None:
        raise ValueError(f"comparison {comparison.id} is not an apply")
    diffs = sorted(comparison.apply.comparison.ops, key=lambda d: d.delta_ms)
    saved = [d for d in diffs if d.delta_ms < 0]
    if not saved:
        raise ValueError(f"no operator got faster with {_precision(comparison) or 'no pass'}")
    best = saved[0]
    how = "disappeared (fused into another)" if best.status == "removed" else f"went from {best.base_ms:.3g} ms"
    grew = [d for d in diffs if d.status == "new"]
    new_note = f" New operators: {', '.join(d.name for d in grew[:3])}." if grew else ""
    # the other options: the operators whose time changed most either way
    others = [d.name for d in sorted(diffs, key=lambda d: -abs(d.delta_ms)) if d is not best]
    return _ask(f"After {_precision(comparison)}, which operator saved the most time per inference?",
                [best.name, *others[:OPTIONS - 1]], best.name,
                f"{best.name} {how}" + (f" to {best.new_ms:.3g} ms" if best.status != "removed" else "")
                + f", saving {-best.delta_ms:.3g} ms per inference.{new_note}")


def batch_series(runs: list[ProfileRun], model: str) -> list[SweepPoint]:
    """One sweep point per batch size from the runs of `model` (runs newest first): the newest run of each size among
    those with the newest run's sequence length, dtype and device, so only the batch differs; sorted by batch."""
    from profiler.measure.sweep import (
        point_from_run,
    )  # here, not at the top: profiler.measure.sweep imports torch, the first page must not

    runs = [r for r in runs if r.model.name == model and r.generation is None]
    if not runs:
        return []
    setup = (runs[0].config.seq_len, runs[0].config.dtype, runs[0].device.kind)
    by_batch: dict[int, SweepPoint] = {}
    for run in runs:
        if (run.config.seq_len, run.config.dtype, run.device.kind) == setup:
            by_batch.setdefault(run.config.batch_size, point_from_run(run))
    return [by_batch[b] for b in sorted(by_batch)]


def best_batch(points: list[SweepPoint]) -> Question:
    """Lesson 5: which batch size gave the highest throughput, with the latency it cost."""
    from profiler.measure.sweep import knees  # see batch_series

    if len(points) < 2:
        raise ValueError("measure at least two batch sizes first")
    best = max(points, key=lambda p: p.throughput_per_s)
    first = points[0]
    lines = [f"batch {p.batch_size}: {p.median_ms:.3g} ms, {p.throughput_per_s:,.0f}/s" for p in points]
    cost = (f" It answers each request in {best.median_ms / first.median_ms:.1f}x the latency of batch "
            f"{first.batch_size}." if best is not first else "")
    return _ask("Which batch size gave the highest throughput (inputs per second)?",
                [f"batch {p.batch_size}" for p in points], f"batch {best.batch_size}",
                f"Batch {best.batch_size} reaches {best.throughput_per_s:,.0f}/s.{cost} " + "; ".join(lines) + ".",
                notes=knees(points))


TRAIN_PHASES = ("data", "forward", "backward", "optimizer", "other")


def training_step(run: ProfileRun) -> Question:
    """Lesson 6: which phase of a training step takes the most time (medians over the timed steps)."""
    t = run.training
    if t is None or not t.phases:
        raise ValueError(f"run {run.id} is not a training run")
    phases = {p: t.phases.get(p, 0.0) for p in TRAIN_PHASES}
    top = max(phases, key=phases.get)
    wall = t.wall.median or sum(phases.values()) or 1.0
    ratio = phases["backward"] / phases["forward"] if phases["forward"] > 0 else 0.0
    return _ask("Which phase of your training step takes the most time?", list(TRAIN_PHASES), top,
                f"{top} takes {phases[top]:.3g} of the {wall:.3g} ms step ({phases[top] / wall:.0%}). Backward took "
                f"{ratio:.1f}x the forward (it computes two gradients per layer, so about 2x is usual); the "
                f"optimizer {phases['optimizer']:.3g} ms and the wait for data {phases['data']:.3g} ms "
                f"({t.data_share:.0%}: {'input-bound' if t.input_bound else 'not input-bound'}).")
