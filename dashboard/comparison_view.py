"""Render a saved comparison (an apply or a search): the Optimize page shows one as it finishes, the Runs page shows
any saved one again. Render only: every figure comes from the SavedComparison the library returned."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from optimizers.results import verdict
from optimizers.search import head_to_head_line
from optimizers.tables import LEADERBOARD_COLUMNS, generation_rows, leaderboard_rows, training_rows
from profiler import RunStoreError, stats
from profiler.analysis import explain, tables
from profiler.analysis import frames as analysis
from profiler.schema import SavedComparison

from . import charts, state


def _headline(c: SavedComparison) -> str:
    what = " + ".join(c.passes) or "no pass"
    # a generation comparison times both models side by side and saves no run of either: say that, not "- → -"
    runs = (f", runs `{c.base_run_id}` → `{c.optimized_run_id}`" if c.base_run_id and c.optimized_run_id else
            ", from generations timed side by side (no runs saved)" if c.kind == "generate" else
            ", from training steps timed side by side (no runs saved)" if c.kind == "train" else "")
    return (f"{c.kind.capitalize()} on {c.model}: {what} — {c.speedup:.2f}x "
            f"(range {c.speedup_low:.2f}-{c.speedup_high:.2f}x), accuracy {verdict(c)}. Saved as `{c.id}`{runs}.")


def _latency_bars(c: SavedComparison):
    try:
        base, new = state.load_run(c.base_run_id), state.load_run(c.optimized_run_id)
    except RunStoreError as exc:
        st.caption(f"Latency chart unavailable: {exc}.")
        return None
    return charts.latency_bars([
        {"label": "base", "median_ms": base.latency.median_ms, "low_ms": base.latency.ci_low_ms,
         "high_ms": base.latency.ci_high_ms},
        {"label": "optimized", "median_ms": new.latency.median_ms, "low_ms": new.latency.ci_low_ms,
         "high_ms": new.latency.ci_high_ms}])


def show_apply(c: SavedComparison) -> None:
    res, acc = c.apply, c.accuracy
    comp = res.comparison
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Speedup", f"{c.speedup:.2f}x", f"range {c.speedup_low:.2f}-{c.speedup_high:.2f}x",
              delta_color="off", delta_arrow="off")
    m2.metric("Accuracy", "PASS" if acc.passed else "FAIL", f"cosine {acc.cosine:.6f}", delta_color="off",
              delta_arrow="off")
    m3.metric("Size", f"{res.optimized_size_bytes / 1e6:.1f} MB", f"from {res.base_size_bytes / 1e6:.1f} MB",
              delta_color="off", delta_arrow="off")
    m4.metric("Apply time", f"{sum(p.apply_s for p in res.passes):.1f} s", "compile/calibrate, not latency",
              delta_color="off", delta_arrow="off")
    busy = comp.load.text if comp.load is not None and comp.load.busy else ""
    if line := stats.verdict_line(comp.speedup, comp.speedup_low, comp.speedup_high, busy):
        st.warning(line.capitalize())
    if busy:
        st.warning(busy.capitalize())
    if not acc.passed:
        st.error(f"Outputs are outside the tolerance: {acc.note}. Do not ship this without checking accuracy.")
    if comp.setup_differences:
        st.warning("The two runs differ in setup: " + "; ".join(comp.setup_differences))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "pass": p.name,
                    "applied": p.applied,
                    "why not": p.reason,
                    "apply s": round(p.apply_s, 2),
                    "notes": "; ".join(p.warnings),
                    "details": str(p.details) if p.details else "",
                }
                for p in res.passes
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    left, right = st.columns(2)
    bars = _latency_bars(c)
    if bars is not None:
        left.plotly_chart(bars, width="stretch")
    steps = c.waterfall or [{"step": "base", "median_ms": c.base_median_ms},
                            {"step": "+".join(c.passes) or "nothing", "median_ms": c.new_median_ms}]
    right.plotly_chart(charts.speedup_waterfall(steps), width="stretch")
    st.subheader("Accuracy")
    st.table({"": ["compared", "max abs error", "relative error", "cosine", "top-1 agreement", "verdict"],
              "value": [acc.kind, f"{acc.max_abs_err:.3g}", f"{acc.rel_err:.3g}", f"{acc.cosine:.6f}",
                        "-" if acc.top1_agreement is None else f"{acc.top1_agreement:.1%}", verdict(c)]})
    st.subheader("What changed")
    diffs = analysis.op_diff_frame(comp, ["faster", "slower", "new", "removed"])
    if len(diffs):
        table, formats = tables.readable(diffs, None, tables.DIFF_COLUMNS)
        st.dataframe(table, hide_index=True, width="stretch", column_config=state.number_columns(formats))
        st.caption(analysis.change_line(comp))
    if res.graph_diff:
        st.caption("Graph nodes by op (base → optimized): " + ", ".join(
            f"{op} {a}→{b}" for op, (a, b) in list(res.graph_diff.items())[:12]))


def show_search(c: SavedComparison) -> None:
    res = c.search
    if res.verdict == "inconclusive":
        st.warning(res.verdict_text[:1].upper() + res.verdict_text[1:])
    elif c.passes:
        st.success(f"Best: {' + '.join(c.passes)} — {c.speedup:.2f}x "
                   f"(range {c.speedup_low:.2f}-{c.speedup_high:.2f}x), within tolerance.")
        if res.verdict_text:
            st.caption(res.verdict_text)
    else:
        st.info("No pipeline beat the model as it is, within the accuracy tolerance.")
    if res.vs_best_single:
        st.caption(head_to_head_line(res.vs_best_single.to_dict()))
    st.caption(f"Stopped: {res.stopped} after {res.elapsed_s:.0f} s. Base {res.base_median_ms:.4g} ms.")
    board = [cand.to_dict() for cand in res.leaderboard]
    st.plotly_chart(charts.pareto_scatter(board, res.base_median_ms), width="stretch")
    st.dataframe(pd.DataFrame(leaderboard_rows(res), columns=list(LEADERBOARD_COLUMNS)), hide_index=True,
                 width="stretch")


def show_generate(c: SavedComparison) -> None:
    """A kept optimized generation, shown as when it finished."""
    show_generation(c.generation)


def show_generation(found: list) -> None:
    """Optimized generations, best first: TTFT / TPOT / tokens-per-s speedups with ranges and token agreement, what
    the best one and the base wrote, and each of its passes with why it did not apply."""
    st.dataframe(pd.DataFrame(generation_rows(found)), hide_index=True, width="stretch")
    if found:
        show_texts(found[0])
        st.dataframe(pd.DataFrame([{"pass": p.name, "applied": p.applied, "apply s": round(p.apply_s, 2),
                                    "why not": p.reason or ""} for p in found[0].passes]),
                     hide_index=True, width="stretch")


def show_texts(result) -> None:
    """What the base and the optimized model wrote, side by side (models with a tokenizer; nothing otherwise)."""
    if not result.base_text:
        return
    left, right = st.columns(2)
    left.caption("Base (as loaded) wrote")
    left.code(result.base_text.strip(), language=None, wrap_lines=True)
    right.caption(f"Optimized ({' + '.join(p.name for p in result.passes if p.applied)}) wrote")
    right.code(result.optimized_text.strip(), language=None, wrap_lines=True)


def show_train(c: SavedComparison) -> None:
    """Kept training passes, shown as when they finished."""
    show_training(c.training)


def show_training(found: list) -> None:
    """Training pipelines, best agreeing first: time-per-sample speedup with its ABBA range, step times, held-out
    loss and agreement, peak memory; the best one's loss curve against the base's, at equal samples seen."""
    st.dataframe(pd.DataFrame(training_rows(found)), hide_index=True, width="stretch")
    for r in found:
        (st.success if r.agrees and r.speedup.p10 > 1.0 else st.warning if r.speedup.rounds else st.info)(r.verdict)
    best = next((r for r in found if r.speedup.rounds), None)
    if best is None:
        return
    st.plotly_chart(charts.loss_curves(best), width="stretch")
    st.caption(f"The loss agrees when the {best.tolerance}. " + " ".join(best.notes))


SHOW = {"apply": show_apply, "search": show_search, "generate": show_generate, "train": show_train}


def show_why(c: SavedComparison) -> None:
    """Why it helped or hurt: the causes profiler.analysis.explain names from the two runs' per-op diff."""
    st.subheader("Why it helped or hurt")
    try:
        verdict_line, causes = explain.for_saved(c, load=state.load_run)  # cached: this redraws every rerun
    except RunStoreError as exc:
        st.caption(f"No explanation: {exc}.")
        return
    st.markdown(f"**{verdict_line[0].upper()}{verdict_line[1:]}**")
    if not causes:
        st.caption("No operator changed by more than the noise band.")
        return
    st.dataframe(pd.DataFrame([{"effect (ms)": round(x.delta_ms, 4), "cause": x.text, "kind": x.kind}
                               for x in causes]), hide_index=True, width="stretch")
    st.caption("Per inference, on each run's median (operator times scaled as on every page); + slower, - faster. "
               "Each operator is counted in one cause only.")


def show(c: SavedComparison) -> None:
    """The headline line, then the kind's own view."""
    if c.error:
        st.error(c.error)
        return
    st.caption(_headline(c))
    SHOW[c.kind](c)
    if c.base_run_id and c.optimized_run_id:
        show_why(c)
