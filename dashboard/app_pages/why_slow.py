import pandas as pd
import streamlit as st

from dashboard import charts, job_view, state
from optimizers import recommend as advice
from profiler import stats
from profiler.analysis import basis
from profiler.analysis import recommend as rc
from profiler.schema import OpLensError, Recommendation

st.title("Why slow?")
state.about("""
**Findings** rank where the time goes (the slowest operators and graph nodes, data movement, overhead, memory-bound
operators, a low FLOP rate, noisy timing), each with its evidence and the usual fix. Findings and recommendations
come from one engine with one definition of each (a recommendation acts on the finding it names), so they agree.

**Roofline.** Each operator's FLOPs and bytes moved give its arithmetic intensity; with its measured time, the
GFLOP/s and GB/s it achieved. The ceilings are this machine's measured GEMM peak for the run's dtype and its memory
bandwidth (a GPU trace: the GPU's published spec). An operator is *compute-bound* when its FLOPs at peak take longer
than its bytes at full bandwidth, *memory-bound* otherwise, and *overhead-bound* (launch, dispatch, Python) when its
time is over 10x its roof and each call does under 20 us of work. Headroom is the time it would save at its roof;
the floor is the whole model with every operator at its roof.

**Recommendations** are rules over the run, its roofline and the model's latest sweep, each with its evidence and
an estimate from the roofline. *Apply and measure* runs the passes with proof (outputs compared, both models
profiled the same way) and keeps the estimate/measured pair, so later estimates for those passes on this machine
are scaled by how earlier ones held.
""")
SWEEP_BATCHES = [1, 2, 4, 8]
run = state.pick_run()
if run is None:
    st.stop()
jobs = state.job_manager()
gpu_trace = run.model.source == "trace" and run.device.kind != "cpu"
peaks_upload = None
if gpu_trace:
    peaks_upload = st.file_uploader("Measured peaks (JSON: `profiler peaks --json` or a TraceLens arch file)",
                                    type=["json"], key="why_peaks_file",
                                    help="replaces the GPU's published spec as the roofline's ceilings")
measured = None
if peaks_upload is not None:
    try:
        measured = state.peaks_from_upload(peaks_upload, run.device.name)
    except OpLensError as exc:
        st.error(str(exc))
diagnosis = advice.why_slow(run, state.runs_dir(), measure_peaks=False, peaks=measured)  # a page never measures


def peaks_measured(job) -> None:
    if st.session_state.get("why_peaks_shown") != job.id:  # once: redraw the page with the cached peaks
        st.session_state["why_peaks_shown"] = job.id
        st.rerun()


@st.fragment(run_every=1.0)
def measure_peaks() -> None:
    """This machine's peaks, measured once as a job (in the queue, under the lock), then cached for every run."""
    job = jobs.get(st.session_state.get("why_peaks_job"))
    if job is None or (not job.active and job.status != "done"):
        if st.button("Measure this machine's peaks", key="why_peaks", type="primary"):
            job = job_view.submit(jobs, "", kind="peaks", device=run.config.device if run.device.kind != "cpu"
                                  else "cpu")
            if job is not None:
                st.session_state["why_peaks_job"] = job.id
    if job is not None:
        job_view.show(jobs, job, "Measuring the peaks", peaks_measured, "Measuring this machine's peaks")


if diagnosis is None and gpu_trace:
    st.info(f"No published peaks for '{run.device.name}' in OpLens's table: upload measured ones above (TraceLens's "
            "microbenchmarks write such a file) to place this trace on its roofline.")
    st.stop()
if diagnosis is None:
    st.info("The roofline needs this machine's peaks (GEMM GFLOP/s per dtype and memory bandwidth), measured once "
            "in about 15 s and then kept for every run (`python -m profiler peaks` does the same).")
    measure_peaks()
    st.stop()
roof, recs, sweep = diagnosis.roofline, diagnosis.recommendations, diagnosis.sweep

c1, c2, c3, c4 = st.columns(4)
c1.metric("Measured median" if roof.measured_what == "median" else "Trace wall time", f"{roof.measured_ms:.3g} ms",
          help=None if roof.measured_what == "median" else f"The {roof.measured_what}: operator figures are totals "
          "over the trace, so the floor is too")
c2.metric("Floor at peak", f"{roof.floor_ms:.3g} ms", help="every operator at its roof, one after another")
c3.metric("Headroom", f"{roof.headroom_ms:.3g} ms", help="sum over operators of time above their roof")
c4.metric("Mostly bound by", roof.verdict or "-", help="compute, memory or overhead: where most of the time goes")
st.caption(
    f"Ceilings ({roof.dtype}, {roof.peaks_source}): {roof.peak_gflops:,.0f} GFLOP/s, {roof.mem_bw_gbs:,.1f} GB/s; "
    "time by bound: " + "; ".join(f"{k} {v:.3g} ms" for k, v in roof.time_by_bound.items()) + ". "
    + basis.basis(run).per_inference_line()
)
for note in roof.notes:
    st.caption(note)

st.subheader("Findings")
if not diagnosis.findings:
    st.success("No single bottleneck stands out: time is spread evenly over many operators.")
for i, f in enumerate(diagnosis.findings, 1):
    with st.container(border=True):
        st.markdown(f"**{i}. {f.title}**")
        st.markdown(f"*Evidence:* {f.evidence}")
        st.markdown(f"*Usually fixed by:* {f.fix}")

tab_ops, tab_shapes, tab_nodes, tab_sweep = st.tabs(["Roofline", "Work per shape", "Graph nodes", "Sweep"])
with tab_ops:
    st.plotly_chart(charts.roofline_figure(roof), width="stretch")
    st.dataframe(pd.DataFrame(rc.points_rows(roof.points)), hide_index=True, width="stretch")
with tab_shapes:
    if run.shapes:
        cov = run.totals.flop_coverage
        st.caption(f"FLOPs and bytes from the trace's recorded shapes explain {cov:.0%} of the compute kernel time. "
                   "One row per operator and recorded signature, the median call's rates; rows without a formula "
                   "list their time so nothing is silently zero." if cov is not None else "")
        st.dataframe(pd.DataFrame(rc.shape_rows(run.shapes)), hide_index=True, width="stretch")
    else:
        st.info("Per-shape work is computed for imported traces recorded with record_shapes=True.")
with tab_nodes:
    if roof.nodes:
        st.dataframe(pd.DataFrame(rc.points_rows(roof.nodes)).rename(columns={"operator": "node"}), hide_index=True,
                     width="stretch")
    else:
        st.info("This run has no timed graph nodes.")


@st.fragment(run_every=1.0)
def sweep_job():
    """A sweep of this run's model, run as a job; the page redraws with it once it is saved."""
    if st.button(f"Sweep batch sizes {', '.join(map(str, SWEEP_BATCHES))}", key="why_sweep"):
        new_job = job_view.submit(jobs, run.model.spec or run.model.name, run.config, state.runs_dir(), kind="sweep",
                                  batch_sizes=SWEEP_BATCHES, seq_lens=[run.config.seq_len or None])
        if new_job is not None:
            st.session_state["why_sweep_job"] = new_job.id
    job = jobs.get(st.session_state.get("why_sweep_job"))
    if job is not None:
        job_view.show(jobs, job, "The sweep", swept)


def swept(job) -> None:
    if st.session_state.get("why_sweep_shown") != job.id:  # once: redraw the page with the saved sweep
        st.session_state["why_sweep_shown"] = job.id
        st.rerun()


with tab_sweep:
    if sweep is None:
        st.info("No sweep of this model yet: run one here, or `python -m profiler sweep MODEL --batch-sizes 1,8,32`.")
    else:
        st.plotly_chart(charts.sweep_figure(sweep), width="stretch")
        for finding in sweep.findings:
            st.caption(finding)
    sweep_job()

st.subheader("Recommendations")
if not recs:
    st.success("No rule fired: nothing stands out on the roofline.")
started = st.session_state.setdefault("why_jobs", {})
kept = st.session_state.setdefault("why_kept", set())


def show_result(rec: Recommendation, key: str) -> None:
    job = jobs.get(started.get(key))
    if job is not None:
        job_view.show(jobs, job, "Apply", lambda job: measured(rec, key, job))


def measured(rec: Recommendation, key: str, job) -> None:
    if not isinstance(job.result, dict):
        return
    if key not in kept:  # keep the estimate/measured pair once
        advice.measured(rec, job.result, run, state.runs_dir())
        kept.add(key)
    speed, acc = job.result.get("speedup", 1.0), job.result.get("accuracy") or {}
    low, high = job.result.get("speedup_low", speed), job.result.get("speedup_high", speed)
    st.markdown(f"**Measured {speed:.2f}x** (range {low:.2f}-{high:.2f}x) vs estimated {rec.estimated_speedup:.2f}x"
                + (f"; output cosine {acc['cosine']:.5f}" if acc.get("cosine") is not None else ""))
    if acc and not acc.get("passed", True):
        st.error("Accuracy FAILED on held-out inputs: this pass cannot be the answer at the default tolerance.")
    if line := stats.verdict_line(speed, low, high):
        st.warning(line[:1].upper() + line[1:])


for i, rec in enumerate(recs, 1):
    key = f"{run.id}:{rec.rule}"
    with st.container(border=True):
        st.markdown(f"**{i}. {rec.title}** — estimated **{rec.estimated_speedup:.2f}x**")
        st.markdown(f"*Evidence:* {rec.evidence}")
        st.markdown(
            f"*Passes:* {', '.join(rec.passes) if rec.passes else 'none (a change to how the model is served)'}"
        )
        if st.button("Apply and measure", key=f"apply_{key}", disabled=not rec.passes or key in started):
            job = job_view.submit(jobs, run.model.spec or run.model.name, run.config, state.runs_dir(),
                                  kind="optimize", passes=rec.passes, source_run_id=run.id)
            if job is not None:
                started[key] = job.id
        if key in started:
            st.fragment(lambda rec=rec, key=key: show_result(rec, key), run_every=1.0)()
