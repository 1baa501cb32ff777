"""Plotly figures as pure functions: data in, go.Figure out. No Streamlit, no I/O."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from profiler.analysis.frames import GraphView
from profiler.schema import Comparison, LatencyStats
from profiler.traces.read import TraceEvent

EXEC, TRANS, OTHER = "#3b6fd4", "#e8842c", "#b8bec9"
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")


def breakdown_bar(parts: dict[str, float], trace: bool = False) -> go.Figure:
    """One horizontal stacked bar: T_exec, T_trans and unexplained, adding up to `wall` (profiler.analysis.basis:
    the median of a live run, the wall time of an imported trace), each part labelled with its ms and share."""
    fig = go.Figure()
    wall = parts.get("wall", 0.0) or 1.0
    for name, color in (("T_exec", EXEC), ("T_trans", TRANS), ("unexplained", OTHER)):
        v = parts.get(name, 0.0)
        fig.add_bar(y=["trace" if trace else "median"], x=[v], name=f"{name} {v:.3g} ms ({v / wall:.0%})",
                    orientation="h", marker_color=color, text=[f"{name} {v / wall:.0%}" if v / wall >= 0.08 else ""],
                    textposition="inside", insidetextanchor="middle",
                    hovertemplate=f"{name}: %{{x:.4g}} ms<extra></extra>")
    title = (f"Where the {parts.get('wall', 0):.3g} ms of the trace went" if trace else
             f"Where the {parts.get('wall', 0):.3g} ms median inference went")
    fig.update_layout(barmode="stack", height=190, xaxis_title="ms", legend=dict(orientation="h", y=-0.9),
                      title=title, **_LAYOUT)
    return fig


def latency_histogram(stats: LatencyStats, title: str = "Latency distribution") -> go.Figure:
    """Histogram of the timed iterations; far outliers (beyond p90 + 3 IQR) are counted in the title, not plotted,
    so one stall does not squash the distribution into a single bar."""
    cut = stats.p90_ms + 3 * max(stats.iqr_ms, 0.01 * stats.median_ms)
    shown = [x for x in stats.samples_ms if x <= cut]
    hidden = len(stats.samples_ms) - len(shown)
    fig = go.Figure(go.Histogram(x=shown, nbinsx=min(40, max(5, len(shown) // 2)), marker_color=EXEC,
                                 hovertemplate="%{x} ms: %{y} iterations<extra></extra>"))
    for x, name, dash, anchor in ((stats.median_ms, "median", "solid", "right"), (stats.p90_ms, "p90", "dash", "left")):
        fig.add_vline(x=x, line_dash=dash)
        # labels above the plot area, not over the bars they name
        fig.add_annotation(x=x, y=1.0, yref="paper", yanchor="bottom", xanchor=anchor, showarrow=False,
                           text=f"{name} {x:.3g} ms")
    axis = "ms per inference" + (f" · {hidden} outlier{'s' if hidden > 1 else ''} above {cut:.3g} ms not shown"
                                 if hidden else "")
    fig.update_layout(title=title, xaxis_title=axis, yaxis_title="iterations", height=300, **_LAYOUT)
    fig.update_layout(margin_t=64)  # room for the median/p90 labels between the title and the bars
    return fig


def top_ops_bar(frame: pd.DataFrame, k: int = 15) -> go.Figure:
    top = frame.sort_values("time_ms", ascending=False).head(k).iloc[::-1]
    fig = go.Figure()
    fig.add_bar(y=top["name"], x=top["exec_ms"], name="T_exec", orientation="h", marker_color=EXEC)
    fig.add_bar(y=top["name"], x=top["trans_ms"], name="T_trans", orientation="h", marker_color=TRANS)
    fig.update_layout(barmode="stack", title=f"Top {len(top)} operators (ms per inference)", xaxis_title="ms",
                      height=max(250, 24 * len(top) + 80), legend=dict(orientation="h", y=-0.15), **_LAYOUT)
    return fig


def module_treemap(frame: pd.DataFrame) -> go.Figure:
    """Modules as nested boxes sized by their own time, coloured by it, each labelled with its ms and share of the
    whole (readable without hovering)."""
    fig = go.Figure(go.Treemap(ids=frame["id"], parents=frame["parent"], labels=frame["label"], values=frame["own_ms"],
                               branchvalues="remainder", customdata=frame[["exec_ms", "trans_ms"]],
                               marker=dict(colors=frame["own_ms"], colorscale="Blues", showscale=True,
                                           colorbar=dict(title="own ms")),
                               texttemplate="<b>%{label}</b><br>%{value:.3g} ms<br>%{percentRoot:.1%}",
                               hovertemplate="<b>%{id}</b><br>own: %{value:.4g} ms (%{percentRoot:.1%})<br>"
                                             "exec %{customdata[0]:.4g} ms, trans %{customdata[1]:.4g} ms"
                                             "<extra></extra>"))
    fig.update_layout(title="Time by module (own time, scaled to the median; a box contains its children)",
                      height=480, **_LAYOUT)
    return fig


def _size(ms: float, biggest: float) -> float:
    return 8 + 32 * math.sqrt(ms / biggest) if biggest > 0 else 10


GRAPH_LABELS = 8  # the slowest nodes named on the graph itself


def _short(node_id: str, width: int = 28) -> str:
    return node_id if len(node_id) <= width else "…" + node_id[-(width - 1):]


def _alternating(labels: list[str]) -> list[str]:
    """Above, below, above, ... for the labelled nodes in order (one pass: a graph has a thousand nodes)."""
    out, shown = [], 0
    for text in labels:
        out.append(("top center", "bottom center")[shown % 2])
        shown += bool(text)
    return out


def graph_figure(view: GraphView, selected: str | None = None) -> go.Figure:
    """Nodes sized and coloured by T_exec, edges coloured and thickened by T_trans; the slowest nodes (and the
    selected one) named with their time on the figure; hover for the details."""
    pos = {n["id"]: (n["x"], n["y"]) for n in view.nodes}
    max_trans = max((e["trans_ms"] for e in view.edges), default=0.0)
    fig = go.Figure()
    plain_x, plain_y = [], []
    for e in view.edges:  # one trace for the untimed edges keeps ~1,000 edges fast to draw
        (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
        if e["trans_ms"] > 0 and max_trans > 0:
            fig.add_scatter(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="text", showlegend=False,
                            line=dict(color=TRANS, width=1 + 5 * e["trans_ms"] / max_trans),
                            text=f"{e['source']} → {e['target']}: T_trans {e['trans_ms']:.4g} ms")
        else:
            plain_x += [x0, x1, None]
            plain_y += [y0, y1, None]
    fig.add_scatter(x=plain_x, y=plain_y, mode="lines", line=dict(color="#c9ced6", width=1), hoverinfo="skip",
                    showlegend=False)
    biggest = max((n["exec_ms"] for n in view.nodes), default=0.0)
    hover = [
        f"<b>{n['id']}</b><br>{n['op']}<br>module: {n.get('module') or '-'}<br>out: {n.get('output_shape') or '-'} "
        f"{n.get('output_dtype') or ''}<br>T_exec {n['exec_ms']:.4g} ms · T_trans {n['trans_ms']:.4g} ms<br>"
        f"FLOPs {n['flops']:.3g}"
        for n in view.nodes
    ]
    named = {n["id"] for n in sorted(view.nodes, key=lambda n: -(n["exec_ms"] + n["trans_ms"]))[:GRAPH_LABELS]
             if n["exec_ms"] + n["trans_ms"] > 0} | {selected}
    labels = [f"{_short(n['id'])} {n['exec_ms'] + n['trans_ms']:.2g} ms" if n["id"] in named else ""
              for n in view.nodes]
    fig.add_scatter(
        x=[n["x"] for n in view.nodes], y=[n["y"] for n in view.nodes], mode="markers+text", name="nodes",
        text=labels, textfont=dict(size=11),
        # alternate above and below, so neighbours on the main path do not print over each other
        textposition=_alternating(labels),
        customdata=[n["id"] for n in view.nodes], hovertext=hover, hoverinfo="text", showlegend=False,
        marker=dict(size=[_size(n["exec_ms"], biggest) for n in view.nodes], color=[n["exec_ms"] for n in view.nodes],
                    colorscale="Blues", cmin=0, showscale=True, colorbar=dict(title="T_exec ms"),
                    line=dict(width=[3 if n["id"] == selected else 0.5 for n in view.nodes],
                              color=["#d62728" if n["id"] == selected else "#555" for n in view.nodes])))
    fig.update_layout(height=560, dragmode="pan", xaxis=dict(visible=False), yaxis=dict(visible=False),
                      title=f"Computation graph, left to right in execution depth; the {GRAPH_LABELS} slowest nodes "
                      "named (ms scaled to the median)", **_LAYOUT)
    return fig


_TIMELINE_COLORS = {"cpu_op": EXEC, "kernel": "#2ca02c", "gpu_memcpy": TRANS, "gpu_memset": "#ffbb78",
                    "cuda_runtime": "#9467bd", "user_annotation": "#8c8c8c", "python_function": "#c7c7c7"}


_DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation")


def _bar_name(name: str) -> str:
    """A trace event's name short enough for a bar: no aten:: prefix, no argument list."""
    return name.removeprefix("aten::").split("(", 1)[0][:40]


def timeline_figure(events: list[TraceEvent], title: str = "One inference") -> go.Figure:
    """Gantt-style timeline: one row per (process, thread/stream), bars at their start with their duration."""
    if not events:
        return go.Figure().update_layout(title="No events in this trace window", **_LAYOUT)
    t0 = min(e.ts_us for e in events)
    device_rows = {(e.pid, e.tid) for e in events if e.cat in _DEVICE_CATS}
    label = lambda e: f"GPU {e.pid} stream {e.tid}" if (e.pid, e.tid) in device_rows else f"CPU thread {e.tid}"
    rows = sorted({label(e) for e in events}, key=lambda r: (not r.startswith("CPU"), r))
    fig = go.Figure()
    for cat in sorted({e.cat for e in events}):
        evs = [e for e in events if e.cat == cat]
        fig.add_bar(y=[label(e) for e in evs], x=[max(e.dur_us, 0.01) / 1e3 for e in evs],
                    base=[(e.ts_us - t0) / 1e3 for e in evs], orientation="h", name=cat,
                    marker_color=_TIMELINE_COLORS.get(cat, OTHER), customdata=[e.name for e in evs],
                    # each bar named inside it where the name fits (uniformtext hides the rest): readable unhovered
                    text=[_bar_name(e.name) for e in evs], textposition="inside", insidetextanchor="start",
                    textfont=dict(color="white"),
                    hovertemplate="%{customdata}<br>start %{base:.4g} ms · %{x:.4g} ms<extra>" + cat + "</extra>")
    fig.update_layout(barmode="overlay", title=title, xaxis_title="ms from the start of the window",
                      height=max(260, 60 * len(rows) + 120), uniformtext=dict(minsize=9, mode="hide"),
                      yaxis=dict(categoryorder="array", categoryarray=rows[::-1], autorange=True),
                      **_LAYOUT)
    return fig


def speedup_figure(comp: Comparison, base_label: str, new_label: str) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=[base_label, new_label],
            y=[comp.base_median_ms, comp.new_median_ms],
            marker_color=[OTHER, EXEC],
            hovertemplate="%{x}: %{y:.4g} ms<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Median latency: {comp.speedup:.2f}x (range {comp.speedup_low:.2f}-{comp.speedup_high:.2f}x)",
        yaxis_title="ms",
        height=300,
        **_LAYOUT,
    )
    return fig


def op_diff_bar(comp: Comparison, k: int = 15) -> go.Figure:
    diffs = [d for d in comp.ops if d.status != "same"][:k][::-1]
    colors = {"faster": "#2ca02c", "slower": "#d62728", "new": "#9467bd", "removed": "#8c8c8c"}
    fig = go.Figure(go.Bar(y=[d.name for d in diffs], x=[d.delta_ms for d in diffs], orientation="h",
                           marker_color=[colors[d.status] for d in diffs], customdata=[d.status for d in diffs],
                           hovertemplate="%{y}: %{x:+.4g} ms (%{customdata})<extra></extra>"))
    fig.update_layout(title="Per-operator change (new - base, ms per inference)", height=max(250, 24 * len(diffs) + 80),
                      xaxis_title="ms", **_LAYOUT)
    return fig


def latency_bars(rows: list[dict]) -> go.Figure:
    """Median latency per variant with its 95% interval as error bars. rows: {label, median_ms, low_ms, high_ms}."""
    fig = go.Figure(go.Bar(
        x=[r["label"] for r in rows], y=[r["median_ms"] for r in rows], marker_color=[OTHER] + [EXEC] * (len(rows) - 1),
        error_y=dict(type="data", symmetric=False, array=[r["high_ms"] - r["median_ms"] for r in rows],
                     arrayminus=[r["median_ms"] - r["low_ms"] for r in rows]),
        hovertemplate="%{x}: %{y:.4g} ms<extra></extra>"))
    fig.update_layout(title="Median latency, with the 95% interval of each median", yaxis_title="ms per inference",
                      height=320, **_LAYOUT)
    return fig


def speedup_waterfall(steps: list[dict]) -> go.Figure:
    """What each pass added: the base latency, then each pass's change, ending at the optimized latency."""
    measures = ["absolute"] + ["relative"] * (len(steps) - 1) + ["total"]
    values = [steps[0]["median_ms"]] + [b["median_ms"] - a["median_ms"] for a, b in zip(steps, steps[1:])] + [0]
    labels = ["base"] + [f"+ {s['step']}" for s in steps[1:]] + ["optimized"]
    text = (
        [f"{steps[0]['median_ms']:.3g} ms"] + [f"{v:+.3g}" for v in values[1:-1]] + [f"{steps[-1]['median_ms']:.3g} ms"]
    )
    fig = go.Figure(go.Waterfall(x=labels, y=values, measure=measures, text=text, textposition="outside",
                                 decreasing=dict(marker_color="#2ca02c"), increasing=dict(marker_color="#d62728"),
                                 totals=dict(marker_color=EXEC)))
    fig.update_layout(title="Latency after each pass (ms per inference)", height=340, showlegend=False,
                      yaxis=dict(rangemode="tozero"), **_LAYOUT)
    return fig


def pareto_scatter(candidates: list[dict], base_ms: float) -> go.Figure:
    """Latency against accuracy (cosine) for every pipeline tried; the Pareto front joins those no other beats on
    both."""
    pts = [c for c in candidates if c.get("median_ms") and c.get("accuracy")]
    fig = go.Figure()
    fig.add_scatter(x=[c["median_ms"] for c in pts], y=[c["accuracy"]["cosine"] for c in pts], mode="markers",
                    marker=dict(size=11, color=[EXEC if c["status"] == "ok" else "#d62728" for c in pts]),
                    text=[" + ".join(c["passes"]) for c in pts], name="pipelines",
                    hovertemplate="%{text}<br>%{x:.4g} ms, cosine %{y:.6f}<extra></extra>")
    front, best = [], -1.0
    for c in sorted(pts, key=lambda c: c["median_ms"]):
        if c["accuracy"]["cosine"] > best:
            front.append(c)
            best = c["accuracy"]["cosine"]
    fig.add_scatter(x=[c["median_ms"] for c in front], y=[c["accuracy"]["cosine"] for c in front], mode="lines",
                    line=dict(color=TRANS, dash="dot"), name="Pareto front", hoverinfo="skip")
    fig.add_vline(x=base_ms, line_dash="dash", annotation_text=f"unoptimized {base_ms:.3g} ms")
    fig.update_layout(title="Every pipeline tried: latency vs accuracy (red: outside the tolerance)",
                      xaxis_title="median ms per inference", yaxis_title="output cosine vs the original", height=380,
                      **_LAYOUT)
    return fig


_BOUND_COLOURS = {"compute": EXEC, "memory": TRANS, "overhead": "#c0392b"}  # "unknown" (no work recorded): not drawn


def roofline_figure(roof, k: int = 40) -> go.Figure:
    """Log-log roofline: the memory slope and the compute ceiling for the run's dtype, an operator per point sized by
    its time and coloured by its bound (overhead-bound ops sit far below both roofs)."""
    pts = [p for p in roof.points[:k] if p.intensity > 0 and p.achieved_gflops > 0]
    fig = go.Figure()
    lo = min([p.intensity for p in pts] + [roof.ridge_intensity / 100 or 0.01])
    hi = max([p.intensity for p in pts] + [roof.ridge_intensity * 100 or 100])
    xs = [lo / 2, roof.ridge_intensity, hi * 2]
    fig.add_trace(go.Scatter(x=xs, y=[min(x * roof.mem_bw_gbs, roof.peak_gflops) for x in xs], mode="lines",
                             name=f"roof ({roof.dtype}: {roof.peak_gflops:,.0f} GFLOP/s, {roof.mem_bw_gbs:,.0f} GB/s)",
                             line=dict(color="#333", width=2), hoverinfo="skip"))
    biggest = max([p.time_ms for p in pts] + [1e-9])
    for bound, colour in _BOUND_COLOURS.items():
        sel = [p for p in pts if p.bound == bound]
        if not sel:
            continue
        fig.add_trace(go.Scatter(
            x=[p.intensity for p in sel], y=[p.achieved_gflops for p in sel], mode="markers", name=f"{bound}-bound",
            marker=dict(color=colour, size=[8 + 40 * math.sqrt(p.time_ms / biggest) for p in sel], opacity=0.7,
                        line=dict(width=1, color="white")),
            text=[f"{p.name}<br>{p.time_ms:.3g} ms, roof {p.roof_ms:.3g} ms, headroom {p.headroom_ms:.3g} ms"
                  for p in sel], hovertemplate="%{text}<br>%{x:.3g} FLOP/byte, %{y:.3g} GFLOP/s<extra></extra>"))
    fig.update_layout(title="Roofline: operators against this machine's ceilings", xaxis_type="log", yaxis_type="log",
                      xaxis_title="arithmetic intensity (FLOP/byte)", yaxis_title="achieved GFLOP/s", **_LAYOUT)
    return fig


def sweep_figure(sweep) -> go.Figure:
    """Throughput and median latency against batch size, one line per other setting, from a saved sweep."""
    fig = go.Figure()
    series: dict[str, list] = {}
    for p in sweep.points:
        if not p.error:
            series.setdefault(f"len {p.seq_len}, {p.threads} thr, {p.dtype}, {p.device}", []).append(p)
    for label, pts in series.items():
        pts = sorted(pts, key=lambda p: p.batch_size)
        fig.add_trace(go.Scatter(x=[p.batch_size for p in pts], y=[p.throughput_per_s for p in pts],
                                 mode="lines+markers", name=f"samples/s · {label}"))
        fig.add_trace(go.Scatter(x=[p.batch_size for p in pts], y=[p.median_ms for p in pts], mode="lines+markers",
                                 name=f"median ms · {label}", yaxis="y2", line=dict(dash="dot")))
    fig.update_layout(title=f"Sweep {sweep.id}", xaxis_title="batch size", xaxis_type="log", yaxis_title="samples/s",
                      yaxis2=dict(title="median ms", overlaying="y", side="right"), **_LAYOUT)
    return fig


def loss_curves(result) -> go.Figure:
    """A training pass's loss curve against the base's, by samples seen (a larger batch takes fewer, bigger steps)."""
    fig = go.Figure()
    for name, losses, batch in (("base", result.base_losses, result.base_batch),
                                ("+".join(result.passes), result.new_losses, result.new_batch)):
        fig.add_scatter(x=[(i + 1) * batch for i in range(len(losses))], y=losses, name=name, mode="lines+markers")
    fig.update_layout(title="Loss curves from the same weights and samples", xaxis_title="samples seen",
                      yaxis_title="training loss", height=320)
    return fig
