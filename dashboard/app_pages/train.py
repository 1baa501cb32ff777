import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import comparison_view, job_view, state

st.title("Train")
state.about("""
Training steps measured as `python -m profiler train MODEL` measures them: warm-up steps first, then each timed step is
a profiler step. **Phases** come from OpLens's markers (data wait, forward, backward, optimizer; "other" is the
rest); **categories** are TensorBoard's profiler plugin's, by priority (kernel, memcpy, memset, communication,
runtime, DataLoader, CPU exec, other): each instant of a step counts once, so both add up to the step. A step that
waits 20% or more of its time for its next batch is **input-bound**. The **memory timeline** is one more step under
the memory profiler, by torch's categories (parameters, gradients, optimizer state, activations, temporaries).
In your own script: `with profiler.record_training(name="...") as rec:` around the loop and `rec.step(loss)` after
each step.
""")
if pending := st.session_state.pop("train_to_show", None):  # a run just trained below: select it
    st.session_state[state.RUN_KEY] = st.session_state["pick_train_run"] = pending
run = state.pick_run(key="pick_train_run")
train_run = run if run is not None and run.training is not None else None
jobs = state.job_manager()


def trained(job) -> None:
    if job.run_id and st.session_state.get("train_shown") != job.id:
        st.session_state["train_shown"] = job.id
        st.session_state["train_to_show"] = job.run_id
        st.rerun()


with st.expander("Profile training steps", expanded=train_run is None, icon=":material/play_circle:"):
    from profiler.measure.train import OPTIMIZERS

    with st.form("trainprofile", enter_to_submit=False):
        cols = st.columns([3, 1, 1, 1, 1])
        spec = cols[0].text_input("Model (sample name or file.py:factory)", value="mlp", key="train_model")
        batch = cols[1].number_input("Batch", 1, 512, 32, key="train_batch")
        steps = cols[2].number_input("Steps", 1, 50, 5, key="train_steps")
        optimizer = cols[3].selectbox("Optimizer", list(OPTIMIZERS), index=list(OPTIMIZERS).index("adamw"),
                                      key="train_optimizer")
        workers = cols[4].number_input("Loader workers", 0, 8, 0, key="train_workers")
        rcols = st.columns([1, 1, 3])
        ranks = rcols[0].number_input("Ranks (DDP over gloo)", 1, 4, 1, key="train_ranks",
                                      help="2 or more: one process per rank on this machine, each rank's trace")
        slow_ms = rcols[1].number_input("Slow the last rank by (ms per step)", 0, 1000, 0, key="train_slow",
                                        help="a straggler on purpose: see the other ranks wait for it")
        go_train = st.form_submit_button("Profile training", type="primary")
    if go_train:
        job = job_view.submit(jobs, spec.strip(), kind="train", runs_dir=state.runs_dir(),
                              train={"batch_size": int(batch), "steps": int(steps), "warmup": 2,
                                     "optimizer": optimizer, "workers": int(workers), "memory": int(ranks) == 1},
                              ranks=int(ranks), slow_rank=int(ranks) - 1 if slow_ms else -1, slow_ms=float(slow_ms))
        if job is not None:
            st.session_state["train_job"] = job.id

    @st.fragment(run_every=0.5)
    def train_progress():
        job_view.panel(jobs, "train_job", "train", "Training {spec} ...", "Profiling training", trained)

    train_progress()


def passes_applied(job) -> None:
    from profiler.schema import SavedComparison

    comparison_view.show_training(SavedComparison.from_dict(job.result).training)


def apply_passes(train_run, advised: list[str]) -> None:
    """Apply training passes to this run's model and prove them (a job, as `python -m optimizers train` does), or show
    the last ones kept for it."""
    from optimizers.training import TRAIN_PASSES
    from profiler.analysis.training_rules import retrainable

    st.subheader("Apply training passes")
    if not retrainable(train_run):
        st.info("This run was recorded elsewhere (an imported trace, `profiler.record_training` in a script, or your "
                "own step function): "
                "OpLens has no model to train here. Apply the passes named above in your own loop, or profile the "
                "model with the form at the top and apply them there.")
        return
    spec = train_run.model.spec or train_run.model.name
    with st.form("trainpasses", enter_to_submit=False):
        names = st.multiselect("Passes (together)", list(TRAIN_PASSES), default=list(dict.fromkeys(advised))[:2] or
                               ["fused-optimizer"], key="train_passes",
                               format_func=lambda n: f"{n}: {TRAIN_PASSES[n].description}")
        search = st.checkbox("Search instead: each speed pass alone, then the winners together",
                             key="train_search")
        go_apply = st.form_submit_button("Apply and prove", type="primary")
    st.caption("Each is timed side by side with the base (ABBA, time per sample) and trains from the same weights on "
               "the same samples: the loss curves and a held-out batch's loss must agree.")
    if go_apply and (names or search):
        cfg = train_run.training.config
        job = job_view.submit(jobs, spec, kind="train-passes", runs_dir=state.runs_dir(),
                              passes=[] if search else names, search=bool(search), source_run_id=train_run.id,
                              train={"batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "seq_len": cfg.seq_len})
        if job is not None:
            st.session_state["train_passes_job"] = job.id
    elif go_apply:
        st.warning("Pick at least one pass, or tick the search.")

    @st.fragment(run_every=0.5)
    def passes_progress():
        job_view.panel(jobs, "train_passes_job", "train-passes", "Proving training passes on {spec} ...",
                       "Applying training passes", passes_applied)

    passes_progress()
    if st.session_state.get("train_passes_job") is None:  # nothing run in this session: the last one kept
        kept = [c for c in state.my_comparisons() if c.kind == "train" and c.spec == spec]
        if kept:
            st.caption(f"Last kept for {spec}: `{kept[0].id}` ({kept[0].created[:16].replace('T', ' ')})")
            comparison_view.show_training(kept[0].training)


if run is not None and train_run is None:
    st.info("The selected run is not a training run: profile one above, or pick a run made by "
            "`python -m profiler train MODEL` or `profiler.record_training`.")
elif train_run is not None:
    t = train_run.training
    c = st.columns(4)
    c[0].metric("Step (median)", f"{t.wall.median:.3g} ms", help=f"p90 {t.wall.p90:.3g} ms, IQR {t.wall.iqr:.2g} ms "
                f"over {t.wall.n} steps")
    c[1].metric("Data wait", f"{t.phases.get('data', 0):.3g} ms", f"{t.data_share:.0%} of the step",
                delta_color="off", delta_arrow="off")
    c[2].metric("Backward / forward", f"{t.phases.get('backward', 0) / max(t.phases.get('forward', 0), 1e-9):.2g}x")
    mem = t.memory
    c[3].metric("Peak memory", f"{mem.peak_bytes / 2**20:,.1f} MiB" if mem and mem.peak_bytes else "-",
                f"during {mem.peak_phase}" if mem and mem.peak_bytes else None, delta_color="off", delta_arrow="off")
    (st.warning if t.input_bound else st.success)(t.verdict)
    from profiler.analysis.training_rules import advice, how_to_apply, retrainable

    advised = advice(train_run)
    for rec in advised:
        st.markdown(f"**Try: {rec.title}** — `{how_to_apply(train_run, rec)}`"
                    + (" (or **Apply and prove** below)" if retrainable(train_run) else "")
                    + f"  \n*Evidence:* {rec.evidence}")
    steps_df = pd.DataFrame([{"step": i + 1, **s.phases} for i, s in enumerate(t.steps)])
    fig = go.Figure()
    for phase in [k for k in steps_df.columns if k != "step"]:
        fig.add_bar(x=steps_df["step"], y=steps_df[phase], name=phase)
    fig.update_layout(barmode="stack", title="Each timed step by phase", xaxis_title="step",
                      yaxis_title="time (ms)", height=340)
    left, right = st.columns(2)
    left.plotly_chart(fig, width="stretch")
    cats = pd.DataFrame({"category": list(t.categories), "ms": list(t.categories.values())})
    cats = cats[cats["ms"] > 0]
    right.plotly_chart(go.Figure(go.Bar(x=cats["ms"], y=cats["category"], orientation="h",
                                        text=[f"{v:.3g} ms" for v in cats["ms"]])).update_layout(
        title="Median step by category (TensorBoard plugin's priority)", xaxis_title="time (ms)", height=340),
        width="stretch")
    if mem is not None and mem.times_ms:
        mfig = go.Figure()
        for name, values in mem.bytes.items():
            mfig.add_scatter(x=mem.times_ms, y=[v / 2**20 for v in values], name=name, stackgroup="memory",
                             mode="lines")
        mfig.add_vline(x=mem.peak_ms, line_dash="dot", annotation_text=f"peak {mem.peak_bytes / 2**20:,.1f} MiB "
                       f"({mem.peak_phase})")
        mfig.update_layout(title="Memory over one step by category", xaxis_title="time into the step (ms)",
                           yaxis_title="memory in use (MiB)", height=360)
        st.plotly_chart(mfig, width="stretch")
    if train_run.ranks:
        st.subheader(f"Ranks ({len(train_run.ranks)})")
        st.dataframe(pd.DataFrame([{"rank": r.rank, "step ms": r.step_ms, "computation ms": r.computation_ms,
                                    "communication ms": r.comm_ms, "transfer ms": r.comm_transfer_ms,
                                    "waiting for others ms": r.comm_sync_ms, "straggler": r.straggler,
                                    "note": r.note} for r in train_run.ranks]), hide_index=True, width="stretch")
    if t.losses:
        st.caption("Loss per step (warm-up included): " + ", ".join(f"{x:.4g}" for x in t.losses))
    for note in train_run.notes:
        st.caption(note)

    apply_passes(train_run, [p for rec in advised for p in rec.passes])
