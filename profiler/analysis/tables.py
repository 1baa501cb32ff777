"""Tables a person reads: headers with units, values in those units, only the digits the noise supports, and no
columns that are empty for the run's device. The raw frames (analysis.ops_frame) stay as they are for CSV."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from profiler import devices
from profiler.schema import ProfileRun


@dataclass(frozen=True)
class Column:
    header: str
    scale: float = 1.0  # raw value * scale = shown value
    kind: str = "time"  # "time" (ms, digits from the noise), "text", "count", "share", "fixed1", "fixed3"


OPS_COLUMNS = {
    "name": Column("operator", kind="text"),
    "category": Column("kind", kind="text"),
    "calls": Column("calls / inference", kind="count"),
    "exec_ms": Column("exec (ms)"),
    "trans_ms": Column("transfer (ms)"),
    "time_ms": Column("total (ms)"),
    "share": Column("share of time", kind="share"),
    "host_ms": Column("host (ms)"),
    "device_ms": Column("device (ms)"),
    "flops": Column("GFLOP", 1e-9, kind="fixed3"),
    "gflops_per_s": Column("GFLOP/s", kind="fixed1"),
    "flops_known": Column("FLOPs known", kind="text"),
    "memory_bytes": Column("allocated (MiB)", 1 / 2**20, kind="fixed1"),
    "input_shapes": Column("input shapes", kind="text"),
}
MODULE_COLUMNS = {
    "id": Column("module", kind="text"),
    "exec_ms": Column("exec (ms)"),
    "trans_ms": Column("transfer (ms)"),
    "own_ms": Column("own time (ms)"),
    "share": Column("share of time", kind="share"),
}
DIFF_COLUMNS = {
    "name": Column("operator", kind="text"),
    "status": Column("change", kind="text"),
    "base_ms": Column("before (ms)"),
    "new_ms": Column("after (ms)"),
    "delta_ms": Column("change (ms)"),
    "ratio": Column("speedup (before / after)", kind="fixed3"),
}
KERNEL_DIFF_COLUMNS = {
    "op": Column("operator", kind="text"),
    "name": Column("kernel", kind="text"),
    "status": Column("change", kind="text"),
    "base_ms": Column("before (ms)"),
    "new_ms": Column("after (ms)"),
    "delta_ms": Column("change (ms)"),
    "base_calls": Column("calls before", kind="count"),
    "new_calls": Column("calls after", kind="count"),
}
# always shown, even when zero: a zero here is itself information
_KEEP = {"name", "category", "calls", "exec_ms", "time_ms", "share", "id", "own_ms", "base_ms", "new_ms", "delta_ms",
         "ratio"}


def time_digits(run: ProfileRun) -> int:
    """Significant digits a time from this run supports: the latency's relative spread (IQR / median) sets them,
    2 for a noisy run (IQR >= 10%), up to 4 for a very quiet one."""
    lat = run.latency
    if lat.median_ms <= 0 or lat.iqr_ms <= 0:
        return 3
    return max(2, min(4, math.ceil(-math.log10(lat.iqr_ms / lat.median_ms)) + 1))


def hidden_columns(frame: pd.DataFrame, run: ProfileRun | None) -> list[str]:
    """Columns with nothing to say for this run: device time on a machine without one, and all-zero numbers."""
    out = []
    on_cpu = run is not None and run.device.kind == "cpu"
    for col in frame.columns:
        if col in _KEEP or not pd.api.types.is_numeric_dtype(frame[col]):
            continue
        if (col == "device_ms" and on_cpu) or not frame[col].fillna(0).astype(float).any():
            out.append(col)
    if on_cpu and "host_ms" in frame.columns and "device_ms" in out:
        out.append("host_ms")  # on a CPU host time is exec + transfer: a third copy of the same numbers
    return out


def readable(frame: pd.DataFrame, run: ProfileRun | None, columns: dict[str, Column] | None = None,
             digits: int | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """(frame with readable headers and values in their units, printf format per shown column).

    Times keep `time_digits(run)` significant digits (or `digits`), rounded in the data too so a copied cell says no
    more than the measurement does; the frame stays numeric so it still sorts."""
    columns = columns or OPS_COLUMNS
    digits = digits or (time_digits(run) if run is not None else 3)
    hide = set(hidden_columns(frame, run))
    shown, formats = {}, {}
    for col in frame.columns:
        if col in hide:
            continue
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        spec = columns.get(col, Column(col, kind="fixed3" if numeric else "text"))
        values = frame[col]
        if spec.kind not in ("text",):
            values = values.astype(float) * spec.scale
        if spec.kind == "time":
            values = values.map(lambda v: _round_sig(v, digits))
        shown[spec.header] = values
        formats[spec.header] = {"time": f"%.{digits}g", "count": "%g", "share": "percent", "fixed1": "%.1f",
                                "fixed3": "%.3f", "text": ""}[spec.kind]
    return pd.DataFrame(shown, index=frame.index), formats


def _round_sig(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


NOT_IN_TRACE = "not in the trace"


def setup(run: ProfileRun) -> dict[str, str]:
    """What a run was measured on, as a person reads it. An imported trace does not record the model's size, batch or
    thread count: those say so instead of showing the placeholders the contract holds (0 parameters, batch 1)."""
    d, m, cfg = run.device, run.model, run.config
    trace = m.source == "trace"
    return {
        "model": f"{m.name} ({m.source})",
        "parameters": NOT_IN_TRACE if trace and not m.parameters else f"{m.parameters:,}",
        "device": f"{d.kind}: {d.name}",
        "threads": NOT_IN_TRACE if trace and not d.threads else str(d.threads),
        "CPU features": ", ".join(d.cpu_features) or "-",
        **({"CPU kernels": line} if (line := devices.capability_line(d)) else {}),
        "dtype": NOT_IN_TRACE if trace else cfg.dtype,
        "batch × seq/image": f"{NOT_IN_TRACE} (one sample = one recorded step)" if trace
        else f"{cfg.batch_size} × {cfg.seq_len}" if cfg.seq_len else str(cfg.batch_size),
        "torch": d.torch,
        "transformers": d.transformers or "-",
        "graph": f"{run.graph.method}, {len(run.graph.nodes)} nodes",
        "run id": run.id,
    }
