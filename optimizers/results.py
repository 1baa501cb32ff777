"""Optimizer results kept in the run store: an apply or a search becomes a SavedComparison (both run ids, passes,
speedup with its range, accuracy, the leaderboard of a search), saved so the CLI and the Runs page can list it and
show it again. Building and describing the record only; the store writes it."""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

from profiler import store
from profiler.measure.session import new_run_id
from profiler.models.loaded import LoadedModel
from profiler.schema import (
    Accuracy,
    GenerateConfig,
    GenerationResult,
    OptimizeResult,
    ProfileConfig,
    SavedComparison,
    SearchResult,
    TrainConfig,
    TrainResult,
)


def _base(kind: str, loaded: LoadedModel, config: ProfileConfig, arch: str | None, source_run_id: str,
          passes: list[str]) -> SavedComparison:
    # the config the model was measured with: batch and sequence length as loaded, not as defaulted
    config = ProfileConfig.from_dict({**config.to_dict(), "batch_size": loaded.batch_size, "seq_len": loaded.seq_len})
    return _record(kind, loaded, config, arch, source_run_id, passes)


def _record(kind: str, loaded: LoadedModel, config: ProfileConfig, arch: str | None, source_run_id: str,
            passes: list[str]) -> SavedComparison:
    return SavedComparison(id=new_run_id(f"{kind}-{loaded.info.name}"),
                           created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"), kind=kind,
                           model=loaded.info.name, spec=loaded.info.spec or loaded.info.name, arch=arch, config=config,
                           passes=passes, source_run_id=source_run_id)


def from_apply(result: OptimizeResult, loaded: LoadedModel, config: ProfileConfig, arch: str | None = None,
               source_run_id: str = "", waterfall: list[dict] | None = None) -> SavedComparison:
    """The record of an apply: the passes that applied, both runs, speedup with range, accuracy."""
    c = result.comparison
    saved = _base("apply", loaded, config, arch, source_run_id, [p.name for p in result.passes if p.applied])
    saved.base_run_id, saved.optimized_run_id = result.base_run_id, result.optimized_run_id
    saved.speedup, saved.speedup_low, saved.speedup_high = c.speedup, c.speedup_low, c.speedup_high
    saved.base_median_ms, saved.new_median_ms = c.base_median_ms, c.new_median_ms
    saved.accuracy, saved.apply, saved.waterfall = result.accuracy, result, list(waterfall or [])
    return saved


def from_search(result: SearchResult, loaded: LoadedModel, config: ProfileConfig, arch: str | None = None,
                source_run_id: str = "") -> SavedComparison:
    """The record of a search: its best pipeline as the headline, the leaderboard and head-to-head inside."""
    best = result.best
    saved = _base("search", loaded, config, arch, source_run_id, list(best.passes) if best else [])
    saved.base_run_id, saved.optimized_run_id = result.base_run_id, result.best_run_id
    saved.base_median_ms = result.base_median_ms
    if best is not None:
        saved.speedup, saved.speedup_low, saved.speedup_high = best.speedup, best.speedup_low, best.speedup_high
        saved.new_median_ms, saved.accuracy = best.median_ms, best.accuracy
    saved.search = result
    return saved


def from_generation(found: list[GenerationResult], loaded: LoadedModel, config: GenerateConfig,
                    objective: str = "tpot") -> SavedComparison:
    """The record of an optimized generation (one pipeline, or a search's tries best first): the best one's passes,
    its TPOT (decode tokens/s) or TTFT speedup with range, and its accuracy as greedy token agreement."""
    pc = ProfileConfig(device=config.device, batch_size=config.batch_size, seq_len=config.prompt_len,
                       dtype=config.dtype)
    best = found[0] if found else None
    applied = [p.name for p in best.passes if p.applied] if best else []
    saved = _record("generate", loaded, pc, None, "", applied)  # the generation's own sizes, not the loaded example's
    saved.generation = list(found)
    if best is not None:
        r = best.ttft_speedup if objective == "ttft" else best.tpot_speedup
        saved.speedup, saved.speedup_low, saved.speedup_high = r.median, r.p10, r.p90
        side = "ttft_ms" if objective == "ttft" else "tpot_ms"
        saved.base_median_ms = getattr(best.base, side).median
        saved.new_median_ms = getattr(best.optimized, side).median
        saved.accuracy = Accuracy(max_abs_err=0.0, rel_err=0.0, cosine=best.prefill_cosine,
                                  top1_agreement=best.token_agreement, passed=best.accurate,
                                  kind="greedy tokens (prefill-logit cosine)",
                                  note="; ".join(best.notes) or f"teacher-forced agreement {best.forced_agreement:.1%}",
                                  inputs="the generation's own prompt")
    return saved


def from_training(found: list[TrainResult], loaded: LoadedModel, config: TrainConfig,
                  source_run_id: str = "") -> SavedComparison:
    """The record of training passes (one pipeline, or a search's tries best agreeing first): the best one's passes,
    its time-per-sample speedup with range, and the loss agreement as its accuracy."""
    pc = ProfileConfig(device=config.device, batch_size=config.batch_size or loaded.batch_size,
                       seq_len=loaded.seq_len)
    best = next((r for r in found if r.speedup.rounds), None)
    saved = _record("train", loaded, pc, None, source_run_id, list(best.passes) if best else [])
    saved.training = list(found)
    if best is not None:
        r = best.speedup
        saved.speedup, saved.speedup_low, saved.speedup_high = r.median, r.p10, r.p90
        saved.base_median_ms, saved.new_median_ms = best.base_ms, best.new_ms
        scale = abs(best.base_heldout) or 1.0
        held = f"held-out loss {best.base_heldout:.4g} -> {best.new_heldout:.4g}, curve within {best.curve_gap:.1%}"
        saved.accuracy = Accuracy(max_abs_err=abs(best.new_heldout - best.base_heldout),
                                  rel_err=abs(best.new_heldout - best.base_heldout) / scale, cosine=0.0,
                                  top1_agreement=None, passed=best.agrees,
                                  kind="training loss (held-out batch and curve)",
                                  note=held + ("" if best.agrees else f"; needs {best.tolerance}"),
                                  inputs="a held-out batch neither model trained on")
    return saved


def keep(saved: SavedComparison, runs_dir: str | os.PathLike | None = None) -> SavedComparison:
    """Save the record in the run store and return it."""
    store.save_comparison(saved, runs_dir)
    return saved


def verdict(saved: SavedComparison) -> str:
    """The accuracy in a word or two: pass, FAIL (why), or '-' when nothing was compared (no pipeline won)."""
    acc = saved.accuracy
    if acc is None:
        return "-"
    return "pass" if acc.passed else f"FAIL ({acc.note})" if acc.note else "FAIL"


def speedup_text(saved: SavedComparison) -> str:
    return f"{saved.speedup:.2f}x ({saved.speedup_low:.2f}-{saved.speedup_high:.2f})"


def summary_row(saved: SavedComparison) -> dict:
    """One line of a listing: what the CLI's table and the Runs page's table show."""
    if saved.error:
        return {"id": saved.id, "created": "", "kind": "?", "model": "?", "passes": "", "speedup": "",
                "accuracy": "", "problem": saved.error}
    return {"id": saved.id, "created": saved.created, "kind": saved.kind, "model": saved.model,
            "passes": "+".join(saved.passes) or "none", "speedup": speedup_text(saved), "accuracy": verdict(saved),
            "problem": ""}


def label(saved: SavedComparison) -> str:
    """A short name for a picker: kind, model, passes, speedup, when."""
    if saved.error:
        return f"{saved.id} (unreadable)"
    return (f"{saved.kind} · {saved.model} · {'+'.join(saved.passes) or 'no pass'} · {speedup_text(saved)} · "
            f"{saved.created[5:16].replace('T', ' ')}")


@dataclass
class ClassRow:
    """One participant's best accuracy-passing result on a model: the class leaderboard's line."""
    participant: str
    speedup: float
    speedup_low: float
    speedup_high: float
    passes: list[str]
    comparison_id: str
    tried: int  # how many of their results on this model counted (accuracy passed)


def class_leaderboard(saved: list[SavedComparison], model: str) -> list[ClassRow]:
    """Best verified speedup per participant on `model`, fastest first: only results whose accuracy passed count, and
    untagged results (no participant) are left out."""
    best: dict[str, ClassRow] = {}
    for c in saved:
        if (c.error or c.kind == "train" or c.model != model or not c.participant or c.accuracy is None
                or not c.accuracy.passed):  # a training speedup is another measure: not on this board
            continue
        row = best.get(c.participant)
        tried = row.tried + 1 if row else 1
        if row is None or c.speedup > row.speedup:
            row = ClassRow(c.participant, c.speedup, c.speedup_low, c.speedup_high, list(c.passes), c.id, tried)
        row.tried = tried
        best[c.participant] = row
    return sorted(best.values(), key=lambda r: r.speedup, reverse=True)
