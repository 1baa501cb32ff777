"""Why a pass helped or hurt: the causes named from two runs' per-op diff, each with its numbers and its effect on
the time per inference, largest first. E.g. "Linear/matmul kernels changed: aten::addmm x14 (3.1 ms) ->
quantized::linear_dynamic x14 (1.2 ms)", "conversions and copies added: aten::quantize_per_tensor x96 (+20 ms)",
"lost fusion: ...", "aten::native_layer_norm slower: 1.2 -> 1.8 ms".

Every op is counted in at most one cause (in none when its time stayed within the noise band, diff.SAME_BAND), so
the causes add up to the change in operator time of the profiled iterations; what the operators do not explain
there (Python and dispatch between them) is a cause of its own. Pure functions over ProfileRun.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from profiler import op_categories as oc
from profiler.analysis import basis as basis_mod
from profiler.analysis import diff
from profiler.schema import Cause, ProfileRun, SavedComparison

# op families whose kernel a pass swaps for another doing the same work
ROLES = {"Linear/matmul": oc.MATMUL, "convolution": oc.CONVOLUTION + oc.INT8_CONVOLUTION, "attention": oc.ATTENTION}
MIN_SHARE = 0.02  # a cause is named when it moves the time by at least 2% of the base median ...
MIN_MS = 0.005  # ... and by at least 5 us (below that is the profiler's own noise)
TOP_OPS = 5  # same-name ops named one by one; the rest are summed
NOISE_RATIO = 1.5  # profiled iterations this far from the median (either way): another process disturbed them


def _per_op(run: ProfileRun) -> dict[str, tuple[float, float]]:
    """name -> (ms per inference on the run's median basis, calls per inference)."""
    out: dict[str, tuple[float, float]] = {}
    scale = basis_mod.basis(run).op_scale
    for o in run.ops:
        ms, calls = out.get(o.name, (0.0, 0.0))
        out[o.name] = (ms + (o.exec_ms + o.trans_ms) * scale, calls + o.calls)
    return out


def _ms(ms: float) -> str:
    return f"{ms:.3g} ms"


def _signed(ms: float) -> str:
    return f"{'+' if ms >= 0 else '-'}{abs(ms):.3g} ms"


def _listing(names: list[str], ops: dict[str, tuple[float, float]], k: int = 4) -> str:
    names = sorted(names, key=lambda n: -ops[n][0])
    shown = [f"{n} x{ops[n][1]:.0f} ({_ms(ops[n][0])})" for n in names[:k]]
    return ", ".join(shown) + (f" and {len(names) - k} more" if len(names) > k else "") if shown else "nothing"


def _kernel_changes(a: dict, b: dict, names: set[str]) -> tuple[list[Cause], set[str]]:
    """A cause per op family whose set of kernels changed (one pass's kernel swapped for another's)."""
    out, used = [], set()
    for role, patterns in ROLES.items():
        mine = {n for n in names if oc.matches(n, patterns)}
        gone, came = sorted(n for n in mine if n not in b), sorted(n for n in mine if n not in a)
        if not gone and not came:
            continue  # same kernels: their own speed is a faster/slower cause
        before = sum(a[n][0] for n in mine if n in a)
        after = sum(b[n][0] for n in mine if n in b)
        kept = sorted(n for n in mine if n in a and n in b)
        ratio = ("gone" if not after else "new work" if not before
                 else f"{before / after:.2f}x faster" if before >= after else f"{after / before:.2f}x slower")
        text = (f"{role} kernels changed: {_listing(gone, a)} -> {_listing(came, b)}"
                + (f" (also kept: {', '.join(kept[:3])})" if kept else "")
                + f"; the family {_ms(before)} -> {_ms(after)} per inference, {ratio}")
        out.append(Cause(kind="kernels", text=text, delta_ms=after - before, ops=sorted(mine)))
        used |= mine
    return out, used


def _conversions(a: dict, b: dict, names: set[str]) -> tuple[list[Cause], set[str]]:
    """Quantize/dequantize, dtype casts and copies, together: a pass that adds them pays for each call."""
    mine = {n for n in names if oc.matches(n, oc.CONVERSIONS)}
    before = sum(a.get(n, (0.0, 0.0))[0] for n in mine)
    after = sum(b.get(n, (0.0, 0.0))[0] for n in mine)
    calls_before = sum(a.get(n, (0.0, 0.0))[1] for n in mine)
    calls_after = sum(b.get(n, (0.0, 0.0))[1] for n in mine)
    if not mine:
        return [], mine
    grown = sorted(mine, key=lambda n: -abs(b.get(n, (0.0, 0.0))[0] - a.get(n, (0.0, 0.0))[0]))
    parts = [f"{n} x{a.get(n, (0, 0))[1]:.0f} -> x{b.get(n, (0, 0))[1]:.0f} "
             f"({_signed(b.get(n, (0.0, 0.0))[0] - a.get(n, (0.0, 0.0))[0])})" for n in grown[:4]]
    what = "added" if after > before else "removed"
    text = (f"conversions and copies {what}: {calls_before:.0f} -> {calls_after:.0f} calls per inference, "
            f"{_ms(before)} -> {_ms(after)} ({'; '.join(parts)})")
    return [Cause(kind="conversions", text=text, delta_ms=after - before, ops=sorted(mine))], mine


def _replaced(a: dict, b: dict, names: set[str]) -> list[Cause]:
    """Other ops that appear or disappear: fusion when fused kernels arrive, lost fusion when they go."""
    gone, came = sorted(n for n in names if n not in b), sorted(n for n in names if n not in a)
    if not gone and not came:
        return []
    before, after = sum(a[n][0] for n in gone), sum(b[n][0] for n in came)
    calls_a, calls_b = sum(c for _, c in a.values()), sum(c for _, c in b.values())
    lost = [n for n in gone if oc.matches(n, oc.FUSED)]
    fused = [n for n in came if oc.matches(n, oc.FUSED)]
    head = ("lost fusion: " + ", ".join(lost[:3]) + " no longer run" if lost and not fused
            else "fused: " + ", ".join(fused[:3]) + " now run" if fused else "ops replaced")
    text = (f"{head}; gone {_listing(gone, a)}; new {_listing(came, b)}; op calls per inference "
            f"{calls_a:.0f} -> {calls_b:.0f}")
    return [Cause(kind="fusion", text=text, delta_ms=after - before, ops=gone + came)]


def _same_ops(a: dict, b: dict, names: set[str], floor_ms: float) -> list[Cause]:
    """Ops in both runs whose own time changed beyond the noise band: the largest one by one, the rest summed."""
    moved = []
    for n in names:
        if n in a and n in b and diff.change_status(a[n][0], b[n][0], diff.SAME_BAND) in ("faster", "slower"):
            moved.append((b[n][0] - a[n][0], n))
    moved.sort(key=lambda t: -abs(t[0]))
    out = []
    for delta, n in moved[:TOP_OPS]:
        kind = "faster" if delta < 0 else "slower"
        ratio = a[n][0] / b[n][0] if b[n][0] else 0.0
        out.append(Cause(kind=kind, text=f"{n} {kind}: {_ms(a[n][0])} -> {_ms(b[n][0])} per inference "
                                         f"({_signed(delta)}, {ratio:.2f}x, x{b[n][1]:.0f} calls)",
                         delta_ms=delta, ops=[n]))
    rest = moved[TOP_OPS:]
    total = sum(d for d, _ in rest)
    if rest and abs(total) >= floor_ms:
        out.append(Cause(kind="faster" if total < 0 else "slower",
                         text=f"{len(rest)} other ops together {'faster' if total < 0 else 'slower'}: "
                              f"{_signed(total)}", delta_ms=total, ops=[n for _, n in rest]))
    return out


def explain(base: ProfileRun, new: ProfileRun) -> list[Cause]:
    """The causes of new's time against base's, largest effect first; only those moving the time per inference by
    MIN_SHARE of the base median or more."""
    a, b = _per_op(base), _per_op(new)
    names = set(a) | set(b)
    floor_ms = max(MIN_SHARE * base.latency.median_ms, MIN_MS)
    causes, used = _kernel_changes(a, b, names)
    conv, used_conv = _conversions(a, b, names - used)
    rest = names - used - used_conv
    causes += conv + _replaced(a, b, rest) + _same_ops(a, b, rest, floor_ms)
    # what the ops leave of each median (profiler.analysis.basis): the causes add up to the change in the median
    outside_a, outside_b = (basis_mod.breakdown(r)["unexplained"] for r in (base, new))
    causes.append(Cause(kind="outside-ops", delta_ms=outside_b - outside_a,
                        text=f"time outside the operators: Python, dispatch and framework between ops "
                             f"{_ms(outside_a)} -> {_ms(outside_b)} per inference ({_signed(outside_b - outside_a)})"))
    kept = [c for c in causes if abs(c.delta_ms) >= floor_ms or c.kind == "kernels"]
    return sorted(kept, key=lambda c: -abs(c.delta_ms))


def _disturbed(run: ProfileRun) -> float | None:
    """How far the profiled iterations' wall time strays from the median (a ratio), when beyond NOISE_RATIO."""
    wall, median = run.totals.wall_ms, run.latency.median_ms
    if wall <= 0 or median <= 0:
        return None
    ratio = wall / median
    return ratio if not 1 / NOISE_RATIO <= ratio <= NOISE_RATIO else None


def verdict(base: ProfileRun, new: ProfileRun, causes: list[Cause]) -> str:
    """One line: helped or hurt, by how much, and the largest cause pulling that way; a caution when a run's
    profiled iterations (where the per-op times come from) ran far from its median."""
    b, n = base.latency.median_ms, new.latency.median_ms
    if n <= 0:
        return "no time measured"
    helped = n < b
    same_way = [c for c in causes if (c.delta_ms < 0) == helped]
    why = f"; mostly {same_way[0].text.split(':')[0]} ({_signed(same_way[0].delta_ms)})" if same_way else ""
    cautions = [f"{label} run's profiled iterations took {r:.1f}x its median" for label, run in (("the base", base),
                ("the optimized", new)) if (r := _disturbed(run)) is not None]
    caution = f" (caution: {'; '.join(cautions)}, so the per-op figures are noisy)" if cautions else ""
    return f"{'helped' if helped else 'hurt'}: {_ms(b)} -> {_ms(n)} median per inference ({b / n:.2f}x){why}{caution}"


def for_saved(saved: SavedComparison, runs_dir: str | os.PathLike | None = None,
              load: Callable[[str], ProfileRun] | None = None) -> tuple[str, list[Cause]]:
    """(verdict, causes) of a saved apply or search, from its two runs in the store (RunStoreError when either is
    gone). `load` reads a run by id (default: store.load from runs_dir); a page passes its cached reader, since it
    draws this on every rerun."""
    from profiler import store
    from profiler.schema import RunStoreError

    if not saved.base_run_id or not saved.optimized_run_id:
        raise RunStoreError(f"comparison {saved.id} ({saved.kind}) keeps no pair of runs to explain")
    load = load or (lambda run_id: store.load(run_id, runs_dir))
    base, new = load(saved.base_run_id), load(saved.optimized_run_id)
    causes = explain(base, new)
    return verdict(base, new, causes), causes
