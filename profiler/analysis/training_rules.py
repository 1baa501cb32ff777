"""What a training run's breakdown says to try: rules over profiler.traces.training's figures, each naming the
training passes that act on it (optimizers.training.TRAIN_PASSES) with its evidence; `python -m optimizers train
SPEC --passes ...` then proves it (speed side by side, the loss from the same weights and samples)."""
from __future__ import annotations

from profiler.schema import ProfileRun, Recommendation

OPTIMIZER_SHARE = 0.20  # the optimizer step from this share of the step: its fused / foreach kernels
COMPUTE_SHARE = 0.50  # forward + backward from this share: compile them, or lower their precision
ACTIVATION_SHARE = 0.40  # activations from this share of the peak: recompute them in backward


def advice(run: ProfileRun) -> list[Recommendation]:
    t = run.training
    if t is None or t.wall.median <= 0:
        return []
    wall, ph, out = t.wall.median, t.phases, []
    if t.input_bound:
        out.append(Recommendation(rule="input-bound", title="Feed the step faster: DataLoader workers",
                                  passes=["loader-workers"], evidence=f"the step waits {t.data_share:.0%} of its "
                                  f"{wall:.3g} ms ({ph.get('data', 0.0):.3g} ms) for its next batch"))
    opt = ph.get("optimizer", 0.0)
    if opt >= OPTIMIZER_SHARE * wall and "fused" not in t.config.optimizer:
        out.append(Recommendation(rule="optimizer", title="The optimizer step is a large part: fused kernels",
                                  passes=["fused-optimizer"], evidence=f"the optimizer takes {opt:.3g} ms of the "
                                  f"{wall:.3g} ms step ({opt / wall:.0%}) with {t.config.optimizer}, one kernel per "
                                  "parameter"))
    compute = ph.get("forward", 0.0) + ph.get("backward", 0.0)
    if compute >= COMPUTE_SHARE * wall:
        passes = ["torch-compile"]
        if run.device.kind == "cuda" or "bf16" not in run.device.emulated:
            passes.append("bf16-autocast")
        out.append(Recommendation(rule="compute", title="Forward and backward dominate: compile them"
                                  + (" or autocast to bf16" if len(passes) > 1 else ""), passes=passes,
                                  evidence=f"forward {ph.get('forward', 0):.3g} ms + backward "
                                           f"{ph.get('backward', 0):.3g} ms of the {wall:.3g} ms step "
                                           f"({compute / wall:.0%})"
                                           + ("" if len(passes) > 1 else "; bf16 is emulated on this CPU, so not "
                                              "bf16")))
    m = t.memory
    if m is not None and m.peak_bytes > 0:
        act = m.peak_by_category.get("activations", 0.0)
        if act >= ACTIVATION_SHARE * m.peak_bytes:
            out.append(Recommendation(rule="activations", title="Activations hold the peak: recompute them",
                                      passes=["activation-checkpointing", "gradient-accumulation"],
                                      evidence=f"activations are {act / 2**20:,.1f} of the {m.peak_bytes / 2**20:,.1f}"
                                               f" MiB peak ({act / m.peak_bytes:.0%}, during {m.peak_phase}): "
                                               "these passes trade time for memory"))
    return out


# what each training pass is in a user's own loop: for a run OpLens cannot retrain (a trace, the recorder, a step
# function), the advice says this instead of a command
IN_YOUR_LOOP = {
    "loader-workers": "DataLoader(..., num_workers=4, pin_memory=True, persistent_workers=True)",
    "fused-optimizer": "torch.optim.AdamW(params, fused=True) (or foreach=True)",
    "bf16-autocast": "torch.autocast(device_type, dtype=torch.bfloat16) around the forward and the loss",
    "torch-compile": "model = torch.compile(model)",
    "activation-checkpointing": "torch.utils.checkpoint.checkpoint around the blocks",
    "channels-last": "model.to(memory_format=torch.channels_last), and the images too",
    "larger-batch": "a larger batch, the learning rate scaled with it",
    "gradient-accumulation": "several micro-batches per optimizer.step()",
}


def retrainable(run: ProfileRun) -> bool:
    """OpLens can train this run's model again (a sample or a factory), so passes can be applied and proven: not a
    trace recorded elsewhere, a script's recorder or a user's own step function."""
    return (run.model.source not in ("trace", "recorder", "step-function")
            and (run.training is None or run.training.source == "live"))


def how_to_apply(run: ProfileRun, rec: Recommendation) -> str:
    """The command that applies and proves `rec` on a run OpLens can retrain, else what to change in the user's own
    loop."""
    if not retrainable(run):
        return "in your loop: " + "; ".join(IN_YOUR_LOOP.get(p, p) for p in rec.passes)
    return f"python -m optimizers train {run.model.spec or run.model.name} --passes {','.join(rec.passes)}"

