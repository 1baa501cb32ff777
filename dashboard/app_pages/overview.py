import streamlit as st

from dashboard import charts, state
from profiler import devices
from profiler.analysis import frames as analysis
from profiler.analysis import basis, tables
from profiler.stats import noise_message, significant

st.title("Overview")
state.about("""
**Median latency** is the middle of the timed iterations; the ± is the interquartile range (IQR), the spread of the
middle half. It is the run's per-inference time: every other time on every page adds up to it or says what it
measures. **Coverage** is how much of an inference the operators explain: T = ΣT_exec + ΣT_trans. The rest
("unexplained") is Python and framework overhead between operators, or an idle GPU. Operator times are measured in
profiled inferences, which the profiler slows down; they are shown scaled to the median, keeping their shares.
**T_trans** is data movement: host↔device copies on a GPU; on a CPU-only machine, host-side copies and layout changes.
""")
run = state.pick_run()
if run is not None:
    lat, t, b = run.latency, run.totals, basis.basis(run)
    parts = basis.breakdown(run)
    for warning in run.warnings:
        st.warning(f"Suspect measurement: {warning}", icon=":material/warning:")
    noise = noise_message(lat)
    if noise:
        st.warning(noise)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Median latency", f"{significant(lat.median_ms, lat.iqr_ms)} ms", f"± {lat.iqr_ms:.2g} ms IQR",
              delta_color="off", delta_arrow="off")
    c2.metric("Throughput", f"{analysis.throughput_per_s(run):,.1f} /s",
              f"batch {run.config.batch_size}", delta_color="off", delta_arrow="off")
    c3.metric(
        "Coverage",
        f"{100 * t.coverage:.1f}%",
        f"{parts['unexplained']:.3g} ms unexplained",
        delta_color="off",
        delta_arrow="off",
    )
    peak = run.memory.peak_bytes / 2**20 if run.memory else 0
    c4.metric(
        "Peak memory", f"{peak:,.0f} MiB", run.memory.kind if run.memory else "", delta_color="off", delta_arrow="off"
    )
    rate = analysis.flop_rate(run)
    c5.metric(
        "Achieved FLOP/s",
        f"{rate.gflops_per_s:,.1f} G" if rate.flops else "n/a",
        f"{rate.flops / 1e9:,.2f} GFLOP per inference" if rate.flops else "",
        delta_color="off",
        delta_arrow="off",
        help=rate.coverage_text(),
    )
    c5.caption(rate.coverage_text())
    if line := devices.capability_line(run.device):
        st.caption(f"CPU: {run.device.name}, {line}")
    st.plotly_chart(charts.breakdown_bar(parts, trace=b.trace), width="stretch")
    st.caption(f"{b.per_inference_line()} T_trans here is {t.trans_label}.")
    left, right = st.columns(2)
    left.plotly_chart(charts.latency_histogram(lat), width="stretch")
    with right:
        st.subheader("Percentiles")
        st.table({"": ["median", "mean", "p10", "p90", "p99", "95% interval of median", "samples"],
                  "ms": [f"{lat.median_ms:.4g}", f"{lat.mean_ms:.4g}", f"{lat.p10_ms:.4g}", f"{lat.p90_ms:.4g}",
                         f"{lat.p99_ms:.4g}", f"{lat.ci_low_ms:.4g} – {lat.ci_high_ms:.4g}", str(len(lat.samples_ms))]})
    st.subheader("Setup")
    rows = tables.setup(run)
    st.table({"": list(rows), "value": list(rows.values())})
    shown = {noise, run.load.text if run.load is not None else None}  # each shown once, as a warning, above
    for note in run.notes:
        if note not in shown:
            st.info(note)
