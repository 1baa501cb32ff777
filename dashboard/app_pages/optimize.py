import pandas as pd
import streamlit as st

import optimizers
from optimizers.search import head_to_head_line
import sample_models
from dashboard import charts, state
from profiler import OpLensError
from profiler.schema import ProfileConfig
from profiler.devices import resolve_device

st.title("Optimize")
state.about("""
Pick passes, in order, and run them. OpLens applies them to a copy of the model, checks the outputs against the
original on the same inputs (cosine similarity, max error, top-1 agreement; a result outside the tolerance is marked
**failing**), then profiles the original and the optimized model the same way. The speedup is a ratio of median
latencies with the range their 95% intervals allow. Time to apply (compilation, calibration) is shown apart from
latency. **Search** tries pipelines for you within a time budget. Which pass wins depends on the CPU or GPU:
measure, do not assume.
""")
jobs = state.job_manager()
c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
names = sample_models.names()
spec = c1.selectbox("Model", names, index=names.index("bert-tiny"), key="opt_model",
                    format_func=lambda n: f"{n} — {sample_models.get(n).description}")
sm = sample_models.get(spec)
device = c2.selectbox("Device", state.available_devices(), key="opt_device")
batch = c3.number_input("Batch size", 1, 4096, sm.default_batch, key="opt_batch")
seq = c4.number_input("Seq / image", 0, 65536, sm.default_seq_len, key="opt_seq")
config = ProfileConfig(device=device, batch_size=int(batch), seq_len=int(seq), warmup=2, repeats=10, min_time_s=1.0)

try:
    loaded = state.cached_model(spec, int(batch), int(seq))
except OpLensError as exc:
    st.error(str(exc))
    st.stop()
dev = resolve_device(device)
table = [{"pass": p.name, "family": p.family, "applies": "yes" if not (why := p.check(loaded, dev)) else "no",
          "why not": why or "", "description": p.description} for p in optimizers.REGISTRY.values()]
with st.expander("All passes, and why any does not apply to this model here", expanded=False):
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")

tab_apply, tab_search = st.tabs(["Apply passes", "Search"])
with tab_apply:
    usable = [t["pass"] for t in table if t["applies"] == "yes"]
    chosen = st.multiselect("Passes, in the order they run", usable, key="opt_passes",
                            help="Only passes that apply to this model on this device are offered")
    problems = optimizers.conflicts(chosen) if chosen else []
    for p in problems:
        st.error(f"Cannot combine: {p}")
    if st.button("Apply and measure", type="primary", disabled=not chosen or bool(problems), key="opt_go"):
        st.session_state["opt_job"] = jobs.submit(spec, config, state.runs_dir(), kind="optimize", passes=chosen).id
with tab_search:
    budget = st.slider("Time budget (seconds)", 30, 1800, 120, step=30, key="search_budget")
    if st.button("Search", type="primary", key="search_go"):
        st.session_state["search_job"] = jobs.submit(spec, config, state.runs_dir(), kind="search", budget_s=budget).id


def _show_optimize(res: dict):
    comp, acc = res["comparison"], res["accuracy"]
    base, new = state.load_run(res["base_run_id"]), state.load_run(res["optimized_run_id"])
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Speedup", f"{comp['speedup']:.2f}x", f"range {comp['speedup_low']:.2f}-{comp['speedup_high']:.2f}x",
              delta_color="off", delta_arrow="off")
    m2.metric("Accuracy", "PASS" if acc["passed"] else "FAIL", f"cosine {acc['cosine']:.6f}", delta_color="off",
              delta_arrow="off")
    m3.metric("Size", f"{res['optimized_size_bytes'] / 1e6:.1f} MB", f"from {res['base_size_bytes'] / 1e6:.1f} MB",
              delta_color="off", delta_arrow="off")
    m4.metric("Apply time", f"{sum(p['apply_s'] for p in res['passes']):.1f} s", "compile/calibrate, not latency",
              delta_color="off", delta_arrow="off")
    if not acc["passed"]:
        st.error(f"Outputs are outside the tolerance: {acc['note']}. Do not ship this without checking accuracy.")
    if comp["setup_differences"]:
        st.warning("The two runs differ in setup: " + "; ".join(comp["setup_differences"]))
    st.dataframe(pd.DataFrame([{"pass": p["name"], "applied": p["applied"], "why not": p["reason"],
                                "apply s": round(p["apply_s"], 2), "notes": "; ".join(p["warnings"]),
                                "details": str(p["details"]) if p["details"] else ""} for p in res["passes"]]),
                 hide_index=True, width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(charts.latency_bars([
        {"label": "base", "median_ms": base.latency.median_ms, "low_ms": base.latency.ci_low_ms, "high_ms": base.latency.ci_high_ms},
        {"label": "optimized", "median_ms": new.latency.median_ms, "low_ms": new.latency.ci_low_ms,
         "high_ms": new.latency.ci_high_ms}]), width="stretch")
    steps = res.get("waterfall") or [{"step": "base", "median_ms": comp["base_median_ms"]},
                                     {"step": "+".join(p["name"] for p in res["passes"] if p["applied"]) or "nothing",
                                      "median_ms": comp["new_median_ms"]}]
    right.plotly_chart(charts.speedup_waterfall(steps), width="stretch")
    st.subheader("Accuracy")
    st.table({"": ["compared", "max abs error", "relative error", "cosine", "top-1 agreement", "verdict"],
              "value": [acc["kind"], f"{acc['max_abs_err']:.3g}", f"{acc['rel_err']:.3g}", f"{acc['cosine']:.6f}",
                        "-" if acc["top1_agreement"] is None else f"{acc['top1_agreement']:.1%}",
                        "pass" if acc["passed"] else f"FAIL ({acc['note']})"]})
    st.subheader("What changed")
    diffs = pd.DataFrame(comp["ops"])
    if len(diffs):
        st.dataframe(diffs[diffs["status"] != "same"], hide_index=True, width="stretch")
    if res["graph_diff"]:
        st.caption("Graph nodes by op (base → optimized): " + ", ".join(
            f"{op} {a}→{b}" for op, (a, b) in list(res["graph_diff"].items())[:12]))


def _show_search(res: dict):
    best = res["best"]
    if best and best["passes"]:
        st.success(f"Best: {' + '.join(best['passes'])} — {best['speedup']:.2f}x "
                   f"(range {best['speedup_low']:.2f}-{best['speedup_high']:.2f}x), within tolerance.")
    else:
        st.info("No pipeline beat the model as it is, within the accuracy tolerance.")
    if res.get("vs_best_single"):
        st.caption(head_to_head_line(res["vs_best_single"]))
    st.caption(f"Stopped: {res['stopped']} after {res['elapsed_s']:.0f} s. Base {res['base_median_ms']:.4g} ms.")
    st.plotly_chart(charts.pareto_scatter(res["leaderboard"], res["base_median_ms"]), width="stretch")
    st.dataframe(pd.DataFrame([{"pipeline": " + ".join(c["passes"]), "status": c["status"],
                                "median ms": c["median_ms"] or None, "speedup": c["speedup"] or None,
                                "cosine": c["accuracy"]["cosine"] if c["accuracy"] else None, "why not": c["reason"]}
                               for c in res["leaderboard"]]), hide_index=True, width="stretch")


@st.fragment(run_every=0.5)
def results():
    for key, show in (("opt_job", _show_optimize), ("search_job", _show_search)):
        job = jobs.get(st.session_state.get(key))
        if job is None:
            continue
        if job.active:
            with st.status(f"{job.kind.capitalize()} on {job.spec} ...", expanded=True):
                st.progress(job.fraction, text=job.stage)
                if st.button("Cancel", key=f"cancel_{job.id}", icon=":material/stop:"):
                    jobs.cancel(job.id)
        elif job.status == "done":
            show(job.result)
        elif job.status == "cancelled":
            st.warning("Cancelled.")
        else:
            st.error(f"{job.kind.capitalize()} failed: {job.error}")


results()
