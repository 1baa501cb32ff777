"""One self-contained HTML report of a run, or of two runs compared: inline CSS and inline SVG charts, no script,
no stylesheet or font from a server, so the file opens from disk with no network. Every name is escaped.

build(run) / build(base, new) return the HTML string; write(path, ...) saves it. The CLI (`python -m profiler report`)
and the dashboard call these same functions.
"""
from __future__ import annotations

import html
from pathlib import Path

from profiler.analysis import diff
from profiler.analysis import frames as analysis
from profiler.schema import Comparison, ProfileRun

TOP = 20
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;
padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
th{background:#f6f6f6;position:sticky;top:0}td.t,th.t{text-align:left;max-width:520px;overflow-wrap:anywhere}
tr.group td{background:#fafafa;font-weight:600}
.faster{color:#1a7f37}.slower{color:#c62828}.new{color:#6a1b9a}.removed{color:#8d6e63}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:18px}.note{color:#666;font-size:12px}
svg text{font:11px system-ui,sans-serif}
"""
_COLORS = {"computation_ms": "#1f77b4", "comm_ms": "#9467bd", "memcpy_ms": "#ff7f0e", "memset_ms": "#8c564b",
           "idle_ms": "#cccccc", "base": "#90a4ae", "new": "#1f77b4", "bar": "#1f77b4", "pos": "#c62828",
           "neg": "#1a7f37"}


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(x: float, digits: int = 4) -> str:
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _table(headers: list[str], rows: list[list], text_cols: tuple[int, ...] = (0,), row_class=None) -> str:
    head = "".join(f'<th class="{"t" if i in text_cols else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r_i, row in enumerate(rows):
        cls = row_class(r_i) if row_class else ""
        cells = []
        for i, v in enumerate(row):
            klass = "t" if i in text_cols else ""
            if isinstance(v, str) and v in ("faster", "slower", "new", "removed"):
                klass += f" {v}"
            cells.append(f'<td class="{klass.strip()}">{_e(v)}</td>')
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _hbars(items: list[tuple[str, float]], unit: str = "ms", signed: bool = False, width: int = 1000) -> str:
    """Horizontal bar chart as inline SVG: one labelled bar per item (signed: bars left/right of a zero line)."""
    items = [(n, v) for n, v in items if v]
    if not items:
        return '<p class="note">nothing to chart</p>'
    row, label_w = 20, 330
    top = max(abs(v) for _, v in items) or 1.0
    plot = width - label_w - 90
    zero = label_w + (plot / 2 if signed else 0)
    scale = (plot / 2 if signed else plot) / top
    parts = [f'<svg width="{width}" height="{row * len(items) + 10}" '
             f'role="img">']
    for i, (name, v) in enumerate(items):
        y = 5 + i * row
        short = name if len(name) <= 52 else name[:49] + "..."
        w = abs(v) * scale
        x = zero - w if (signed and v < 0) else zero
        color = _COLORS["pos" if v > 0 else "neg"] if signed else _COLORS["bar"]
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end"><title>{_e(name)}</title>{_e(short)}'
                     f'</text><rect x="{x:.1f}" y="{y + 2}" width="{max(w, 0.5):.1f}" height="{row - 5}" '
                     f'fill="{color}"/><text x="{(x + w + 4) if not (signed and v < 0) else zero + 4:.1f}" '
                     f'y="{y + 13}">{_e(("+" if signed and v > 0 else "") + _num(v, 3))} {unit}</text>')
    if signed:
        parts.append(f'<line x1="{zero}" x2="{zero}" y1="0" y2="{row * len(items) + 10}" stroke="#888"/>')
    parts.append("</svg>")
    return "".join(parts)


def _gpu_bar(run: ProfileRun, width: int = 1000) -> str:
    """The GPU window of one step as a stacked bar: computation, communication, memcpy, memset and idle."""
    g = run.gpu
    parts_ms = [("computation_ms", g.computation_ms), ("comm_ms", g.comm_ms), ("memcpy_ms", g.memcpy_ms),
                ("memset_ms", g.memset_ms), ("idle_ms", g.idle_ms)]
    total = sum(v for _, v in parts_ms) or 1.0
    x, out = 0.0, [f'<svg width="{width}" height="56" role="img">']
    for name, v in parts_ms:
        w = v / total * width
        out.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" fill="{_COLORS[name]}">'
                   f'<title>{_e(name)}: {_num(v)} ms</title></rect>')
        x += w
    x = 0.0
    for name, v in parts_ms:
        out.append(f'<rect x="{x}" y="38" width="10" height="10" fill="{_COLORS[name]}"/><text x="{x + 14}" y="47">'
                   f'{_e(name[:-3])} {_num(v, 3)} ms</text>')
        x += 190
    out.append("</svg>")
    return "".join(out)


def _summary(run: ProfileRun) -> str:
    lat, t = run.latency, run.totals
    cards = [("model", run.model.name), ("device", run.device.name), ("median latency", f"{_num(lat.median_ms)} ms"),
             ("p10-p90", f"{_num(lat.p10_ms, 3)}-{_num(lat.p90_ms, 3)} ms"), ("exec time", f"{_num(t.exec_ms)} ms"),
             ("transfer time", f"{_num(t.trans_ms)} ms"), ("batch / length", f"{run.config.batch_size} / "
                                                                              f"{run.config.seq_len}"),
             ("dtype", run.config.dtype)]
    return '<div class="cards">' + "".join(f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in cards) + \
        "</div>"


def _run_sections(run: ProfileRun) -> str:
    out = [_summary(run), "<h2>Top operators</h2>"]
    frame = analysis.ops_frame(run).sort_values("time_ms", ascending=False).head(TOP)
    out.append(_hbars([(r["name"], r["time_ms"]) for _, r in frame.iterrows()]))
    out.append(_table(["operator", "kind", "calls", "exec (ms)", "transfer (ms)", "total (ms)", "share"],
                      [[r["name"], r["category"], _num(r["calls"]), _num(r["exec_ms"]), _num(r["trans_ms"]),
                        _num(r["time_ms"]), f"{100 * r['share']:.1f}%"] for _, r in frame.iterrows()], (0, 1)))
    if run.gpu is not None:
        g = run.gpu
        out.append(f"<h2>GPU timeline</h2><p class=\"sub\">per step, averaged over {g.steps} step(s); window from "
                   f"{_e(g.window_source or 'n/a')}</p>")
        out.append(_gpu_bar(run))
        out.append(_table(["field", "ms per step"], [[f, _num(getattr(g, f))] for f in diff.GPU_FIELDS]))
    if run.kernels:
        ks = sorted(run.kernels, key=lambda k: -k.time_ms)[:TOP]
        out.append("<h2>Top kernels</h2>")
        out.append(_table(["kernel", "operator", "calls", "time (ms)"],
                          [[k.name, k.op, _num(k.calls), _num(k.time_ms)] for k in ks], (0, 1)))
    if run.transfers:
        out.append("<h2>Transfers</h2>")
        out.append(_table(["direction", "calls", "bytes", "time (ms)", "GB/s"],
                          [[t.direction, _num(t.calls), f"{t.bytes:,.0f}", _num(t.time_ms), _num(t.bandwidth_gbps, 3)]
                           for t in run.transfers]))
    return "".join(out)


def _comparison_sections(base: ProfileRun, new: ProfileRun, comp: Comparison) -> str:
    out = [f'<div class="cards"><div class="card">speedup (base / new median)<b>{comp.speedup:.2f}x</b>'
           f'range {comp.speedup_low:.2f}-{comp.speedup_high:.2f}x</div>'
           f'<div class="card">base median<b>{_num(comp.base_median_ms)} ms</b>{_e(base.device.name)}</div>'
           f'<div class="card">new median<b>{_num(comp.new_median_ms)} ms</b>{_e(new.device.name)}</div></div>']
    if comp.setup_differences:
        out.append('<p class="note">The runs differ in setup, so the ratio mixes causes: ' +
                   _e("; ".join(comp.setup_differences)) + "</p>")
    if comp.gpu:
        out.append("<h2>GPU timeline per step</h2>")
        out.append(_table(["field", "base", "new", "change"],
                          [[m.name, _num(m.base), _num(m.new), _num(m.delta)] for m in comp.gpu]))
    if comp.modules:
        out.append("<h2>Modules (own time)</h2>")
        out.append(_table(["module", "base (ms)", "new (ms)", "change (ms)"],
                          [[m.name, _num(m.base), _num(m.new), _num(m.delta)] for m in comp.modules[:TOP]]))
    out.append("<h2>Operators, largest change first</h2>")
    out.append(_hbars([(d.name, d.delta_ms) for d in comp.ops[:TOP]], signed=True))
    out.append(_table(["operator", "change", "base (ms)", "new (ms)", "change (ms)", "speedup"],
                      [[d.name, d.status, _num(d.base_ms), _num(d.new_ms), _num(d.delta_ms), _num(d.ratio, 3)]
                       for d in comp.ops[:3 * TOP]], (0, 1)))
    if comp.kernels:
        rows, groups = [], []
        for op, a, c, ks in diff.by_op(comp.kernels):
            groups.append(len(rows))
            rows.append([op, "(all kernels)", diff.change_status(a or None, c or None), _num(a), _num(c), _num(c - a)])
            rows += [["", k.name, k.status, _num(k.base_ms), _num(k.new_ms), _num(k.delta_ms)] for k in ks[:TOP]]
        group_rows = set(groups)
        out.append("<h2>Kernels by operator, largest change first</h2>")
        out.append(_table(["operator", "kernel", "change", "base (ms)", "new (ms)", "change (ms)"], rows, (0, 1, 2),
                          row_class=lambda i: "group" if i in group_rows else ""))
    if comp.transfers:
        out.append("<h2>Transfers</h2>")
        out.append(_table(["direction", "base (ms)", "new (ms)", "change (ms)", "base bytes", "new bytes"],
                          [[t.direction, _num(t.base_ms), _num(t.new_ms), _num(t.delta_ms), f"{t.base_bytes:,.0f}",
                            f"{t.new_bytes:,.0f}"] for t in comp.transfers]))
    return "".join(out)


def _title(run: ProfileRun) -> str:
    return f"{run.label or run.model.name} ({run.id})"


def build(base: ProfileRun, new: ProfileRun | None = None) -> str:
    """The report as one HTML string: one run, or `new` compared against `base` followed by each run's own sections."""
    if new is None:
        title, body = f"OpLens report: {_title(base)}", _run_sections(base)
    else:
        comp = analysis.compare(base, new)
        title = f"OpLens comparison: {_title(base)} vs {_title(new)}"
        body = (_comparison_sections(base, new, comp) + f"<h1>Base: {_e(_title(base))}</h1>" + _run_sections(base) +
                f"<h1>New: {_e(_title(new))}</h1>" + _run_sections(new))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
            f'<p class="sub">made by OpLens; times are per inference unless marked per step</p>{body}</body></html>')


def write(path: str | Path, base: ProfileRun, new: ProfileRun | None = None) -> Path:
    path = Path(path)
    path.write_text(build(base, new), encoding="utf-8")
    return path
