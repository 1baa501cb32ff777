"""The optimizer tables people read: which passes apply to a model, and a search's leaderboard. Rows of plain values
from one definition each, so the dashboard, the CLI and the benchmarks show the same columns."""
from __future__ import annotations

from profiler.console import format_table
from profiler.schema import GenerationResult, SearchResult, TrainResult

LEADERBOARD_COLUMNS = ("pipeline", "status", "median ms", "speedup", "range", "cosine", "apply s", "why not")


def usable_passes(applicability: list[dict]) -> list[str]:
    """The names of the passes that apply, in registry order, from base.applicability's rows."""
    return [row["pass"] for row in applicability if row["applies"]]


def pass_label(applicability: list[dict]) -> dict[str, str]:
    """Each pass's name as a picker shows it: marked when this CPU emulates its precision."""
    return {row["pass"]: row["pass"] + (" (emulated here: expect a slowdown)" if row.get("emulated here") else "")
            for row in applicability}


def applicability_rows(applicability: list[dict]) -> list[dict]:
    """base.applicability's rows as a person reads them: "yes"/"no" instead of True/False."""
    return [{**row, "applies": "yes" if row["applies"] else "no"} for row in applicability]


def leaderboard_rows(result: SearchResult) -> list[dict]:
    """One row per candidate the search tried, in leaderboard order; None where a candidate was never timed or
    compared (it did not apply, broke, or ran out of time)."""
    return [{"pipeline": " + ".join(c.passes), "status": c.status, "median ms": c.median_ms or None,
             "speedup": c.speedup or None,
             "range": f"{c.speedup_low:.2f}-{c.speedup_high:.2f}" if c.speedup else "",
             "cosine": c.accuracy.cosine if c.accuracy else None, "apply s": c.apply_s, "why not": c.reason}
            for c in result.leaderboard]


_TEXT = {"median ms": "{:.4g}", "speedup": "{:.2f}", "cosine": "{:.5f}", "apply s": "{:.1f}"}


def leaderboard_text(result: SearchResult) -> str:
    """The leaderboard as an aligned text table, for terminals. The last column, why not, is never cut: a reason
    cut mid-sentence ("...expect a slowdown; tried") says less than a wrapped line."""
    rows = [[("" if row[k] is None else _TEXT[k].format(row[k])) if k in _TEXT else str(row[k])
             for k in LEADERBOARD_COLUMNS] for row in leaderboard_rows(result)]
    return format_table(rows, list(LEADERBOARD_COLUMNS), left=(0, 1, 7))


GENERATION_COLUMNS = ("pipeline", "TTFT ms", "TTFT x (range)", "TPOT ms", "TPOT x (range)", "decode tok/s",
                  "agree free / forced", "cosine", "apply s", "verdict")


def generation_rows(results: list[GenerationResult]) -> list[dict]:
    """One row per pipeline: TTFT, TPOT, decode tokens/s with speedups and ranges, accuracy, apply time (and
    perplexity when measured). What the CLI prints as text and the Generate page as a table."""
    rows = []
    with_ppl = any(r.perplexity_base for r in results)
    rng = lambda x: f"{x.median:.2f} ({x.p10:.2f}-{x.p90:.2f})"
    for r in results:
        applied = [p.name for p in r.passes if p.applied]
        row = dict(zip(GENERATION_COLUMNS, [
            "+".join(applied) or "(none applied)",
            f"{r.base.ttft_ms.median:.1f} -> {r.optimized.ttft_ms.median:.1f}",
            rng(r.ttft_speedup),
            f"{r.base.tpot_ms.median:.2f} -> {r.optimized.tpot_ms.median:.2f}",
            rng(r.tpot_speedup),
            f"{r.base.decode_tokens_per_s:.1f} -> {r.optimized.decode_tokens_per_s:.1f}",
            f"{r.token_agreement:.3f} / {r.forced_agreement:.3f}",
            f"{r.prefill_cosine:.5f}",
            f"{sum(p.apply_s for p in r.passes):.1f}",
            "ok" if r.accurate else "inaccurate",
        ]))
        if with_ppl:
            row["perplexity"] = (f"{r.perplexity_base:.4g} -> {r.perplexity_optimized:.4g}" if r.perplexity_base
                                 else "-")
        rows.append(row)
    return rows


def generation_text(results: list[GenerationResult]) -> str:
    """result_rows as an aligned text table, for terminals."""
    rows = generation_rows(results)
    header = list(rows[0]) if rows else list(GENERATION_COLUMNS)
    return format_table([list(r.values()) for r in rows], header)


TRAINING_COLUMNS = ("passes", "speedup", "ABBA range", "step ms", "held-out loss", "loss", "peak MiB")


def training_rows(results: list[TrainResult]) -> list[dict]:
    """One row per training pipeline: time-per-sample speedup with its ABBA range, step times, held-out loss, whether
    the loss agrees, one step's peak memory. What `python -m optimizers train` prints and the Train page shows."""
    rows = []
    for r in results:
        ran = bool(r.speedup.rounds)
        rows.append(dict(zip(TRAINING_COLUMNS, [
            "+".join(r.passes),
            f"{r.speedup.median:.2f}x" if ran else "-",
            f"{r.speedup.p10:.2f}-{r.speedup.p90:.2f}" if ran else "-",
            (f"{r.base_ms:.3g} -> {r.new_ms:.3g}" + (f" (batch {r.base_batch} -> {r.new_batch})"
                                                     if r.new_batch != r.base_batch else "")) if ran else "-",
            f"{r.base_heldout:.4g} -> {r.new_heldout:.4g}" if ran else "-",
            ("agrees" if r.agrees else "DIFFERS") if ran else "n/a",
            f"{r.base_peak_bytes / 2**20:,.1f} -> {r.new_peak_bytes / 2**20:,.1f}" if ran else "-",
        ])))
    return rows


def training_text(results: list[TrainResult]) -> str:
    """training_rows as an aligned text table, for terminals."""
    rows = training_rows(results)
    return format_table([list(r.values()) for r in rows], list(TRAINING_COLUMNS), left=(0, 5))
